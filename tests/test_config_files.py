"""Settings files: presets, runs' config.json and hand-written TOML/JSON read back as configs."""

from __future__ import annotations

import json
import math
import re

import pytest

from vaekit.cli.training import shown_preset
from vaekit.config.files import MAX_BYTES, read_settings, to_toml
from vaekit.config.presets import PRESETS
from vaekit.config.settings import ModelConfig, TrainConfig
from vaekit.errors import ConfigError
from vaekit.runs import config_file, layout

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib


def _show(preset) -> dict:
    """A preset as ``vaekit presets --show NAME`` prints it."""
    model, train, meta = shown_preset(preset)
    return {**meta, "model": model, "train": train}


def _write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _configs(settings, input_shape=(1, 28, 28), n_classes=10) -> tuple[ModelConfig, TrainConfig]:
    """The configs a command builds from settings and the data's shape and classes."""
    classes = n_classes if settings.conditional else 0
    model = ModelConfig(input_shape=input_shape, n_classes=classes, **settings.model)
    return model, TrainConfig(**settings.train)


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_round_trips_as_toml_and_json(tmp_path, name):
    preset = PRESETS[name]
    shown = _show(preset)
    text = to_toml(shown["model"], shown["train"], {k: shown[k] for k in ("name", "description")})
    parsed = tomllib.loads(text)
    assert parsed["name"] == preset.name and parsed["description"] == preset.description
    for section in ("model", "train"):
        expected = {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in shown[section].items()
            if v is not None
        }
        assert parsed[section] == expected
    expected_model = ModelConfig(input_shape=(1, 28, 28), n_classes=10, **preset.model)
    if not preset.conditional:
        expected_model = ModelConfig(input_shape=(1, 28, 28), **preset.model)
    for path in (
        _write(tmp_path, f"{name}.toml", text),
        _write(tmp_path, f"{name}.json", json.dumps(shown, indent=2, ensure_ascii=False)),
    ):
        settings = read_settings(path)
        assert settings.preset == name
        assert settings.conditional is preset.conditional
        assert _configs(settings) == (expected_model, TrainConfig(**preset.train))


def test_a_runs_config_json_repeats_the_run(tmp_path):
    model = ModelConfig(
        input_shape=(3, 8, 8),
        arch="conv",
        conv_channels=(4, 8),
        hidden=(16,),
        latent_dim=3,
        n_classes=5,
        likelihood="gaussian",
        learn_sigma="per-dim",
        sigma=math.sqrt(0.5),
    )
    train = TrainConfig(
        data=str(tmp_path / "data.npz"),
        epochs=3,
        lr=3e-4,
        image_size=(8, 8),
        val_fraction=0.2,
        keep="best",
        patience=2,
        kl_warmup=1.5,
    )
    config_file.write_config(tmp_path, model, train, "train")
    settings = read_settings(tmp_path / layout.CONFIG_FILE)
    assert settings.preset is None and settings.conditional is True
    assert "input_shape" not in settings.model and "n_classes" not in settings.model
    assert _configs(settings, (3, 8, 8), 5) == (model, train)


def test_flat_and_sectioned_settings_agree(tmp_path):
    flat = _write(
        tmp_path, "flat.toml", "hidden = [32, 16]\nlatent_dim = 4\nepochs = 2\nlr = 0.01\n"
    )
    sectioned = _write(
        tmp_path,
        "sections.toml",
        "[model]\nhidden = [32, 16]\nlatent_dim = 4\n\n[train]\nepochs = 2\nlr = 0.01\n",
    )
    expected = ({"hidden": (32, 16), "latent_dim": 4}, {"epochs": 2, "lr": 0.01}, None, None)
    assert tuple(read_settings(flat)) == expected
    assert tuple(read_settings(sectioned)) == expected
    named = read_settings(_write(tmp_path, "p.json", '{"preset": "tf-mlp", "conditional": true}'))
    assert (named.preset, named.conditional, named.model, named.train) == ("tf-mlp", True, {}, {})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lrr = 0.1", "unknown setting 'lrr'; the nearest valid one is 'lr'"),
        (
            "[train]\nepoch = 3",
            "unknown setting [train] 'epoch'; the nearest valid one is 'epochs'",
        ),
        (
            "[model]\nlatent_dims = 3",
            "unknown setting [model] 'latent_dims'; the nearest valid one is 'latent_dim'",
        ),
        ("[model]\nlr = 0.1", "lr is a train setting: put it under [train], not [model]"),
        (
            "[optimiser]\nlr = 0.1",
            "unknown setting 'optimiser'; the nearest valid one is 'optimizer'",
        ),
    ],
)
def test_unknown_keys_are_named_with_the_nearest_valid_one(tmp_path, text, message):
    path = _write(tmp_path, "bad.toml", text)
    with pytest.raises(ConfigError) as caught:
        read_settings(path)
    assert str(caught.value) == f"{path}: {message}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('epochs = "ten"', "epochs must be a positive whole number or auto, got 'ten'"),
        ("epochs = 2.0", "epochs must be a positive whole number or auto, got 2.0"),
        ('hidden = "400"', "hidden must be a list of layer sizes, got '400'"),
        ("hidden = [400, -1]", "hidden[1] must be a positive whole number, got -1"),
        ('learn_sigma = "scalar"', "learn_sigma applies only to the gaussian likelihood"),
        ('optimizer = "rmsprop"', "optimizer must be one of adam, sgd; got 'rmsprop'"),
        ("[model]\nn_classes = 2.5", "n_classes must be a whole number from 0 to 10,000, got 2.5"),
        ("conditional = 1", "conditional must be true or false, got 1"),
        ("conditional = false\n[model]\nn_classes = 3", "contradicts n_classes = 3"),
        ("preset = 'nope'", "unknown preset 'nope'"),
        ("model = 3", "model must be a table of settings, got 3"),
        ("lr = 0.1\n[train]\nlr = 0.2", "lr is given twice (again as [train] lr)"),
        ("format = 'other'", "format is 'other'; a run's config.json has 'vaekit-run'"),
    ],
)
def test_values_of_the_wrong_kind_get_the_configs_message(tmp_path, text, message):
    path = _write(tmp_path, "bad.toml", text)
    with pytest.raises(ConfigError, match=f"^{path}: .*{re.escape(message)}") as caught:
        read_settings(path)
    assert "\n" not in str(caught.value)


def test_syntax_errors_name_the_line(tmp_path):
    toml = _write(tmp_path, "bad.toml", "epochs = 2\nlr = = 0.1\n")
    with pytest.raises(ConfigError, match=r"bad.toml is not valid TOML: .*line 2") as caught:
        read_settings(toml)
    assert "\n" not in str(caught.value)
    bad_json = _write(tmp_path, "bad.json", '{\n  "epochs": 2,\n  "lr": ,\n}')
    with pytest.raises(ConfigError, match=r"bad.json is not valid JSON: .*at line 3, column 9"):
        read_settings(bad_json)
    nested = _write(tmp_path, "deep.json", "[" * 100_000 + "]" * 100_000)
    with pytest.raises(ConfigError, match="deep.json"):
        read_settings(nested)
    listed = _write(tmp_path, "list.json", "[1, 2]")
    with pytest.raises(ConfigError, match="must hold a table of settings, not a list"):
        read_settings(listed)


def test_unreadable_huge_and_misnamed_files_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="missing.toml is missing"):
        read_settings(tmp_path / "missing.toml")
    (tmp_path / "folder.toml").mkdir()
    with pytest.raises(ConfigError, match="folder.toml is not a regular file"):
        read_settings(tmp_path / "folder.toml")
    huge = tmp_path / "huge.toml"
    huge.write_bytes(b"# " + b"x" * MAX_BYTES)
    with pytest.raises(ConfigError, match=f"larger than {MAX_BYTES:,} bytes"):
        read_settings(huge)
    binary = tmp_path / "binary.json"
    binary.write_bytes(b'{"data": "\xff"}')
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        read_settings(binary)
    with pytest.raises(ConfigError, match=r"a settings file is .toml or .json, not .yaml"):
        read_settings(_write(tmp_path, "settings.yaml", "lr: 0.1"))


def test_to_toml_writes_strings_numbers_and_leaves_out_none():
    text = to_toml(
        {"hidden": (1, 2), "decoder_hidden": None, "sigma": 0.1 + 0.2, "beta": 1e-300},
        {"data": 'a "quoted"\\path\nwith\ttabs\x7f and é', "seed": 0, "flag": False},
        {"odd key": "x"},
    )
    parsed = tomllib.loads(text)
    assert parsed == {
        "odd key": "x",
        "model": {"hidden": [1, 2], "sigma": 0.1 + 0.2, "beta": 1e-300},
        "train": {"data": 'a "quoted"\\path\nwith\ttabs\x7f and é', "seed": 0, "flag": False},
    }
    assert "decoder_hidden" not in text
    with pytest.raises(ConfigError, match="type dict cannot be written as TOML"):
        to_toml({"hidden": {}}, {})
