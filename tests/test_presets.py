"""Presets: each reference recipe trains (one epoch on a small labelled subset) and reproduces
its published settings; conditional sampling from the command line."""

import json

import numpy as np
import pytest

from test_cli import assert_user_error, run_cli
from vaekit.config.presets import PRESETS
from vaekit.runs import config_file
from vaekit.train.loop import learning_rate

REFERENCE = {
    "pytorch-example": (
        {"hidden": [400], "latent_dim": 20, "activation": "relu", "likelihood": "bernoulli"},
        {"lr": 1e-3, "batch_size": 128, "optimizer": "adam", "epochs": 10, "binarize": "none"},
    ),
    "tf-mlp": (
        {"hidden": [128], "latent_dim": 100, "activation": "elu", "likelihood": "bernoulli"},
        {"lr": 1e-3, "batch_size": 64, "sample_every_steps": 1000, "sample_count": 16},
    ),
    "numpy-scratch": ({"hidden": [200], "latent_dim": 2}, {"engine": "numpy"}),
    "deconv-mse": ({"arch": "conv", "likelihood": "gaussian", "learn_sigma": "fixed"}, {}),
    "burda-vae": (
        {"hidden": [200, 200], "latent_dim": 50, "activation": "tanh"},
        {
            "binarize": "dynamic",
            "batch_size": 20,
            "lr_schedule": "burda",
            "adam_eps": 1e-4,
            "epochs": 3280,
        },
    ),
    "conditional-mlp": ({"hidden": [400], "latent_dim": 2}, {"epochs": 20}),
}


@pytest.fixture(scope="module")
def subset(tmp_path_factory, mnist_small):
    """300 labelled mnist-small images as an .npz file (a user data file: no test split)."""
    path = tmp_path_factory.mktemp("data") / "subset.npz"
    train = mnist_small[0]
    np.savez(path, x=(train.x[:300, 0] * 255).astype(np.uint8), y=train.y[:300])
    return path


def test_presets_lists_all_and_shows_each(capsys):
    code, out, _ = run_cli(capsys, "presets")
    assert code == 0
    for name in ("pytorch-example", "tf-mlp", "numpy-scratch", "deconv-mse", "burda-vae"):
        assert name in out
    for name, (model, train) in REFERENCE.items():
        code, out, _ = run_cli(capsys, "presets", "--show", name)
        shown = json.loads(out)
        assert code == 0 and shown["name"] == name
        assert shown["model"].items() >= model.items(), name
        assert shown["train"].items() >= train.items(), name
    assert_user_error(capsys, "presets", "--show", "nope", words="unknown preset")


@pytest.mark.parametrize("name", list(PRESETS))
def test_each_preset_trains_one_epoch(name, subset, tmp_path, capsys):
    out = tmp_path / name
    code, text, err = run_cli(
        capsys,
        "train",
        "--preset",
        name,
        "--data",
        str(subset),
        "--epochs",
        "1",
        "--out",
        str(out),
        "--quiet",
    )
    assert code == 0, err
    model, train, _ = config_file.read_config(out)
    expected_model, expected_train = REFERENCE[name]
    assert {
        k: list(v) if isinstance(v, tuple) else v for k, v in model.to_dict().items()
    }.items() >= expected_model.items()
    assert train.epochs == 1 and train.data == str(subset)  # explicit flags win
    assert (out / "samples.png").is_file() and (out / "model.safetensors").is_file()
    assert model.conditional == (name == "conditional-mlp")


def test_tf_mlp_draws_a_4x4_grid_every_n_steps(subset, tmp_path, capsys):
    out = tmp_path / "tf"
    assert (
        run_cli(
            capsys,
            "train",
            "--preset",
            "tf-mlp",
            "--data",
            str(subset),
            "--epochs",
            "1",
            "--sample-every-steps",
            "2",
            "--out",
            str(out),
            "--quiet",
        )[0]
        == 0
    )
    steps = sorted(p.name for p in (out / "figures").glob("samples-step-*.png"))
    assert steps[:2] == ["samples-step-0000002.png", "samples-step-0000004.png"]
    assert len(steps) == 2  # 300 images, batch 64: 5 steps


def test_pytorch_example_writes_samples_and_reconstructions_each_epoch(subset, tmp_path, capsys):
    out = tmp_path / "pt"
    assert (
        run_cli(
            capsys,
            "train",
            "--preset",
            "pytorch-example",
            "--data",
            str(subset),
            "--epochs",
            "2",
            "--hidden",
            "32",
            "--out",
            str(out),
            "--quiet",
        )[0]
        == 0
    )
    names = sorted(p.name for p in (out / "figures").iterdir())
    assert names == [
        "reconstructions-epoch-001.png",
        "reconstructions-epoch-002.png",
        "samples-epoch-001.png",
        "samples-epoch-002.png",
    ]


def test_burda_learning_rate_schedule():
    from vaekit.config.settings import TrainConfig

    config = TrainConfig(lr=1e-3, lr_schedule="burda")
    # stage i lasts 3^i epochs: epochs 1 | 2-4 | 5-13 | ... ; rate 1e-3 · 10^(−i/7)
    stages = {1: 0, 2: 1, 4: 1, 5: 2, 13: 2, 14: 3, 3280: 7, 4000: 7}
    for epoch, stage in stages.items():
        assert learning_rate(config, epoch) == pytest.approx(1e-3 * 10 ** (-stage / 7)), epoch


def test_conditional_sampling_from_the_cli(subset, tmp_path, capsys):
    run = tmp_path / "cvae"
    assert (
        run_cli(
            capsys,
            "train",
            "--data",
            str(subset),
            "--conditional",
            "--hidden",
            "32",
            "--latent-dim",
            "2",
            "--epochs",
            "1",
            "--out",
            str(run),
            "--quiet",
        )[0]
        == 0
    )
    code, out, _ = run_cli(
        capsys,
        "sample",
        str(run),
        "--label",
        "7",
        "-n",
        "16",
        "--npy",
        str(tmp_path / "sevens.npy"),
    )
    assert code == 0 and (run / "samples-label7-n16-seed0.png").is_file()
    assert np.load(tmp_path / "sevens.npy").shape == (16, 1, 28, 28)
    code, out, _ = run_cli(capsys, "sample", str(run), "--grid-by-label", "-n", "5")
    assert code == 0 and "10 rows" in out
    assert_user_error(
        capsys,
        "sample",
        str(run),
        "--label",
        "12",
        words="not one of this model's classes: 0, 1, 2",
    )
    assert run_cli(capsys, "evaluate", str(run), "--data", str(subset), "--iw-samples", "3")[0] == 0
    plain = tmp_path / "plain"
    assert (
        run_cli(
            capsys,
            "train",
            "--data",
            str(subset),
            "--hidden",
            "8",
            "--latent-dim",
            "2",
            "--epochs",
            "1",
            "--out",
            str(plain),
            "--quiet",
        )[0]
        == 0
    )
    assert_user_error(capsys, "sample", str(plain), "--label", "3", words="not a conditional")


def test_conditional_needs_labels(tmp_path, capsys):
    np.save(tmp_path / "nolabels.npy", np.zeros((20, 8, 8), np.uint8))
    assert_user_error(
        capsys,
        "train",
        "--data",
        str(tmp_path / "nolabels.npy"),
        "--conditional",
        "--out",
        str(tmp_path / "r"),
        words="needs labels",
    )
    assert not (tmp_path / "r").exists()
