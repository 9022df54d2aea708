"""The command line end to end, in a temporary directory, including every error path."""

import json
import subprocess
import sys

import numpy as np
import pytest

from vaekit.cli import main

SMALL = ["--hidden", "32", "--latent-dim", "4", "--batch-size", "250"]


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(capsys, *argv, words):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vaekit: error: "), err
    assert "Traceback" not in err
    assert words in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def trained_run(tmp_path_factory):
    """A one-epoch mnist-small run made through the CLI (shared by the tests below)."""
    out = tmp_path_factory.mktemp("cli") / "run"
    assert (
        main(
            [
                "train",
                "--data",
                "mnist-small",
                "--out",
                str(out),
                "--epochs",
                "1",
                "--quiet",
                *SMALL,
            ]
        )
        == 0
    )
    return out


def test_demo_writes_pictures_and_checkpoint_and_prints_test_elbo(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli(capsys, "demo", "--epochs", "2")
    assert code == 0
    assert "test -ELBO after 2 epochs" in out and "nats per example" in out
    run = tmp_path / "runs" / "demo"
    for name in ("samples.png", "reconstructions.png", "model.safetensors", "config.json"):
        assert (run / name).is_file()
    # a second demo replaces the first demo run; a foreign run in --out is protected
    assert run_cli(capsys, "demo", "--epochs", "1")[0] == 0
    other = tmp_path / "mine"
    assert (
        main(
            [
                "train",
                "--data",
                "mnist-small",
                "--out",
                str(other),
                "--epochs",
                "1",
                "--quiet",
                *SMALL,
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert_user_error(capsys, "demo", "--out", str(other), words="not empty")


def test_train_sample_reconstruct(trained_run, tmp_path, capsys):
    metrics = [json.loads(x) for x in (trained_run / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 1 and metrics[0]["test_loss"] > 0
    code, out, _ = run_cli(
        capsys,
        "sample",
        str(trained_run),
        "-n",
        "16",
        "--seed",
        "3",
        "--out",
        str(tmp_path / "s.png"),
        "--npy",
        str(tmp_path / "s.npy"),
    )
    assert code == 0 and (tmp_path / "s.png").is_file()
    samples = np.load(tmp_path / "s.npy")
    assert samples.shape == (16, 1, 28, 28) and samples.dtype == np.float32
    assert run_cli(capsys, "sample", str(trained_run), "-n", "4")[0] == 0
    assert (trained_run / "samples-n4-seed0.png").is_file()
    code, out, _ = run_cli(
        capsys,
        "reconstruct",
        str(trained_run),
        "--data",
        "mnist-small",
        "-n",
        "6",
        "--out",
        str(tmp_path / "r.png"),
    )
    assert code == 0 and (tmp_path / "r.png").is_file()


def test_sample_is_deterministic(trained_run, tmp_path, capsys):
    for name in ("a", "b"):
        run_cli(
            capsys, "sample", str(trained_run), "-n", "4", "--npy", str(tmp_path / f"{name}.npy")
        )
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))


def test_train_resume_continues(trained_run, capsys):
    code, out, _ = run_cli(capsys, "train", "--resume", "--out", str(trained_run), "--epochs", "2")
    assert code == 0 and "resuming" in out and "epoch 2/2" in out
    assert len((trained_run / "metrics.jsonl").read_text().splitlines()) == 2


def test_user_data_file(tmp_path, capsys, rng):
    x = rng.integers(0, 256, size=(300, 8, 8), dtype=np.uint8)
    np.save(tmp_path / "tiny.npy", x)
    code, out, _ = run_cli(
        capsys,
        "train",
        "--data",
        str(tmp_path / "tiny.npy"),
        "--out",
        str(tmp_path / "run"),
        "--epochs",
        "2",
        "--hidden",
        "16",
        "--latent-dim",
        "2",
        "--quiet",
    )
    assert code == 0 and "training -ELBO after 2 epochs" in out
    assert (tmp_path / "run" / "samples.png").is_file()


def test_datasets_lists_the_named_sets(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "datasets", "--data-dir", str(tmp_path), "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert set(rows) == {"mnist", "fashion-mnist", "mnist-small"}
    assert rows["mnist-small"]["present"] is True
    assert run_cli(capsys, "datasets")[0] == 0


@pytest.mark.parametrize(
    "argv, words",
    [
        (["train", "--data", "no-such-set", "--out", "x"], "no-such-set"),
        (["train", "--out", "x"], "--data"),
        (["train", "--data", "mnist-small", "--latent-dim", "0", "--out", "x"], "latent_dim"),
        (["train", "--data", "mnist-small", "--epochs", "ten"], "invalid int"),
        (["train", "--data", "mnist-small", "--activation", "swish"], "invalid choice"),
        (["train", "--bogus"], "unrecognized"),
        (["train", "--resume"], "--out"),
        (["frobnicate"], "invalid choice"),
        (["sample", "nowhere"], "does not exist"),
        (["sample", "."], "config.json"),
        (["reconstruct", "."], "--data"),
    ],
)
def test_errors_are_one_line_and_exit_2(tmp_path, capsys, monkeypatch, argv, words):
    monkeypatch.chdir(tmp_path)
    assert_user_error(capsys, *argv, words=words)
    assert not (tmp_path / "x").exists()


def test_errors_against_a_run(trained_run, capsys, tmp_path):
    before = {p.name: p.read_bytes() for p in trained_run.iterdir() if p.is_file()}
    assert_user_error(
        capsys, "train", "--data", "mnist-small", "--out", str(trained_run), words="not empty"
    )
    assert_user_error(
        capsys, "train", "--resume", "--out", str(trained_run), "--lr", "0.1", words="--lr"
    )
    assert_user_error(capsys, "sample", str(trained_run), "-n", "0", words="-n")
    np.save(tmp_path / "wrong.npy", np.zeros((3, 5, 5), np.uint8))
    assert_user_error(
        capsys,
        "reconstruct",
        str(trained_run),
        "--data",
        str(tmp_path / "wrong.npy"),
        "--split",
        "train",
        words="shape",
    )
    assert_user_error(
        capsys,
        "sample",
        str(trained_run),
        "--out",
        str(tmp_path / "no" / "dir" / "s.png"),
        words="No such file",
    )
    after = {p.name: p.read_bytes() for p in trained_run.iterdir() if p.is_file()}
    assert after == before  # nothing overwritten or lost


def test_console_entry_point_runs_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "vaekit", "sample", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("vaekit: error:") and "Traceback" not in proc.stderr
    help_text = subprocess.run(
        [sys.executable, "-m", "vaekit", "train", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert help_text.returncode == 0 and "--latent-dim" in help_text.stdout
