"""Settings files: ``vaekit train --config FILE`` (TOML or JSON) and TOML for ``presets --show``.

A settings file names :class:`~vaekit.config.settings.ModelConfig` and
:class:`~vaekit.config.settings.TrainConfig` fields by their names, in one of these shapes:

- a run's ``config.json`` (``format``, ``vaekit_version``, ``created_by``, ``model``,
  ``train``), so that a run can be repeated;
- a preset as ``vaekit presets --show NAME`` prints it (``name``, ``description``, ``model``,
  ``train``; ``input_shape`` and ``n_classes`` may read ``"from the data"``), as JSON or TOML;
- sections ``[model]`` and ``[train]``, or the same settings flat at the top level, with an
  optional ``preset = "NAME"`` (its settings under the file's) and ``conditional = true``.

``input_shape`` always comes from the data, so it is read and dropped; ``n_classes`` says
whether the model is conditional (its number of classes also comes from the data). A key that
is no setting is refused in one line naming it and the nearest setting; a value of the wrong
kind gets the configs' own message.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any, NamedTuple

from vaekit.config.presets import get_preset
from vaekit.config.settings import ModelConfig, TrainConfig
from vaekit.disk import parse_json, read_regular
from vaekit.errors import ConfigError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

#: The ``format`` of a run's ``config.json``, which is a settings file too.
RUN_FORMAT = "vaekit-run"
#: The largest settings file read (a config is a few hundred bytes).
MAX_BYTES = 1 << 20
SUFFIXES = (".toml", ".json")
#: What ``vaekit presets --show`` prints for the sizes the data decides.
FROM_THE_DATA = "from the data"
MODEL_FIELDS = tuple(f.name for f in fields(ModelConfig))
TRAIN_FIELDS = tuple(f.name for f in fields(TrainConfig))
#: Top-level keys that describe the file rather than set anything.
DESCRIPTIVE = ("format", "vaekit_version", "created_by", "name", "description")
OPTIONS = ("preset", "conditional")
SECTIONS = {"model": MODEL_FIELDS, "train": TRAIN_FIELDS}
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


class Settings(NamedTuple):
    """What a settings file asks for: model and training settings (only those it gives, lists
    as tuples; no ``input_shape`` or ``n_classes``), the preset it names (None: none; a preset
    printed by ``presets --show`` names itself) and whether the model is conditional (None: the
    file does not say)."""

    model: dict[str, Any]
    train: dict[str, Any]
    preset: str | None
    conditional: bool | None


def read_settings(path: str | Path) -> Settings:
    """The settings in the TOML or JSON file ``path`` (by its suffix), validated: unknown keys,
    keys given twice, values of the wrong kind, syntax errors and unreadable files raise
    :class:`ConfigError` with one line that names the file. Reading runs no code: networks the
    file names by import path are imported only when a model is built, with consent (see
    :func:`vaekit.model.custom_networks.check_consent`)."""
    path = Path(path)
    document = _parse(path, _read_text(path))
    try:
        return _settings(document)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _read_text(path: Path) -> str:
    """The file's text: a regular file (not a FIFO or a device, which could block or never end)
    of at most :data:`MAX_BYTES` of UTF-8."""
    if path.suffix.lower() not in SUFFIXES:
        raise ConfigError(
            f"{path}: a settings file is .toml or .json, not {path.suffix or '(none)'}"
        )
    data = read_regular(path, MAX_BYTES, ConfigError)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text (byte {exc.start})") from None


def _parse(path: Path, text: str) -> dict[str, Any]:
    """The document of a TOML or JSON text, which must be a table (an object)."""
    try:
        document = tomllib.loads(text) if path.suffix.lower() == ".toml" else parse_json(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path} is not valid JSON: {exc.msg} (at line {exc.lineno}, column {exc.colno})"
        ) from None
    except ValueError as exc:  # a key given twice, an integer of more than 4300 digits
        raise ConfigError(f"{path} is not a settings file: {_first_clause(exc)}") from None
    except RecursionError:
        raise ConfigError(f"{path} is nested too deeply for a settings file") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{path} must hold a table of settings, not a {type(document).__name__}")
    return document


def _first_clause(exc: Exception) -> str:
    """The first clause of Python's message (its advice to raise a limit is not ours)."""
    return str(exc).split(";")[0]


def _settings(document: dict[str, Any]) -> Settings:
    """Sort a document's keys into sections, check every name, then validate the values."""
    if "format" in document and document["format"] != RUN_FORMAT:
        raise ConfigError(
            f"format is {document['format']!r}; a run's config.json has {RUN_FORMAT!r}"
        )
    model, train = {}, {}
    chosen = {"model": model, "train": train}
    for key, value in document.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{key} must be a table of settings, got {value!r}")
            for name, setting in value.items():
                _check_name(name, key)
                _put(chosen[key], name, setting, f"[{key}] {name}")
        elif key in MODEL_FIELDS or key in TRAIN_FIELDS:
            _put(model if key in MODEL_FIELDS else train, key, value, key)
        elif key not in DESCRIPTIVE and key not in OPTIONS:
            raise ConfigError(_unknown(key, (*MODEL_FIELDS, *TRAIN_FIELDS, *SECTIONS, *OPTIONS)))
    preset = _preset_name(document)
    conditional = _conditional(document, model)
    model.pop("input_shape", None)
    _validate(model, train, conditional)
    return Settings(model, train, preset, conditional)


def _check_name(name: str, section: str) -> None:
    if name in SECTIONS[section]:
        return
    for other, names in SECTIONS.items():
        if name in names:
            raise ConfigError(
                f"{name} is a {other} setting: put it under [{other}], not [{section}]"
            )
    raise ConfigError(_unknown(name, SECTIONS[section], f"[{section}] "))


def _unknown(key: str, valid: tuple[str, ...], where: str = "") -> str:
    nearest = difflib.get_close_matches(key, valid, n=1, cutoff=0.0)
    return f"unknown setting {where}{key!r}; the nearest valid one is {nearest[0]!r}"


def _put(section: dict[str, Any], name: str, value: Any, where: str) -> None:
    if name in section:
        raise ConfigError(f"{name} is given twice (again as {where})")
    section[name] = tuple(value) if isinstance(value, list) else value


def _preset_name(document: dict[str, Any]) -> str | None:
    """The preset the file names: ``preset``, or ``name`` of a preset printed by --show."""
    name = document.get("preset", document.get("name"))
    if name is None:
        return None
    if not isinstance(name, str):
        raise ConfigError(f"preset must be a preset's name, got {name!r}")
    return get_preset(name).name


def _conditional(document: dict[str, Any], model: dict[str, Any]) -> bool | None:
    """Whether the model is conditional: ``conditional``, or ``n_classes`` (popped) > 0 or
    ``"from the data"``; None when the file says neither."""
    flag = document.get("conditional")
    if flag is not None and not isinstance(flag, bool):
        raise ConfigError(f"conditional must be true or false, got {flag!r}")
    if "n_classes" not in model:
        return flag
    n_classes = model.pop("n_classes")
    if n_classes == FROM_THE_DATA:
        implied = True
    else:
        ModelConfig(n_classes=n_classes)  # its own message for a value of the wrong kind
        implied = n_classes > 0
    if flag is not None and flag != implied:
        raise ConfigError(f"conditional = {str(flag).lower()} contradicts n_classes = {n_classes}")
    return implied


def _validate(model: dict[str, Any], train: dict[str, Any], conditional: bool | None) -> None:
    """Build both configs once, so a value of the wrong kind gets the configs' own message; the
    model with an input shape its convolutions can halve (the data's comes later)."""
    channels = model.get("conv_channels", ModelConfig.conv_channels)
    side = 2 ** len(channels) if isinstance(channels, tuple) and channels else 1
    ModelConfig.from_dict(
        {"input_shape": (1, side, side), **model, "n_classes": int(bool(conditional))}
    )
    TrainConfig.from_dict(train)


def to_toml(
    model: Mapping[str, Any], train: Mapping[str, Any], meta: Mapping[str, Any] | None = None
) -> str:
    """Settings as TOML: ``meta``'s keys (a preset's name, description) at the top, then
    ``[model]`` and ``[train]``. Values are strings, whole numbers, floats, bools and lists of
    those; None values are left out (the setting's default, None, applies)."""
    lines = [f"{_key(k)} = {_value(v)}" for k, v in (meta or {}).items() if v is not None]
    for name, section in (("model", model), ("train", train)):
        lines += ["", f"[{name}]"]
        lines += [f"{_key(k)} = {_value(v)}" for k, v in section.items() if v is not None]
    return "\n".join(lines).lstrip("\n") + "\n"


def _key(name: str) -> str:
    return name if _BARE_KEY.fullmatch(name) else _string(name)


def _string(text: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's, and DEL, which JSON leaves, is escaped."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return ("-inf" if value < 0 else "inf") if math.isinf(value) else "nan"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise ConfigError(f"a setting of type {type(value).__name__} cannot be written as TOML")
