"""The rule of each setting, written once beside its field: what values it takes, its help and its
command-line flag. A config checks every field by its rule when it is built (from flags, a
settings file, a run's ``config.json`` or the estimator's keywords alike), the command line
makes its flags from the same rules, and the estimator its keyword parameters.

>>> @dataclass(frozen=True)
... class Example:
...     epochs: int = setting(10, "number of epochs", Rule("whole", 1, MAX_EPOCHS))
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
from dataclasses import dataclass
from typing import Any

from vaekit.config.limits import MAX_CUDA_INDEX, MAX_UNITS
from vaekit.errors import ConfigError


@dataclass(frozen=True)
class Rule:
    """What values a setting takes.

    ``kind``: ``whole`` (an int from ``low`` to ``high``, or one of ``choices``: the words it
    takes too, such as ``auto``), ``number`` (a finite float from
    ``low`` to ``high``, each end excluded when ``above`` / ``below``), ``choice`` (one of
    ``choices``), ``sizes`` (layer sizes: whole numbers from 1 to MAX_UNITS, at least one unless
    ``empty``), ``pair`` (two whole numbers from ``low`` to ``high``), ``text`` (a non-empty
    string), ``device`` (:func:`check_device`) or ``module`` (an import path
    ``package.module:ClassName``). ``optional``: None is a value too.
    """

    kind: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    above: bool = False
    below: bool = False
    empty: bool = False
    optional: bool = False


def choice(*choices: str) -> Rule:
    """One of ``choices``."""
    return Rule("choice", choices=choices)


def whole(low: int, high: int) -> Rule:
    """A whole number from ``low`` to ``high``."""
    return Rule("whole", low, high)


#: Layer sizes, none at all allowed.
SIZES = Rule("sizes", empty=True)


def setting(
    default: Any,
    help: str,
    rule: Rule,
    *,
    flag: str | None = "",
    metavar: str | None = None,
    group: str = "",
) -> Any:
    """A config field: its ``default``, one line of ``help`` (what it is, in its units) and its
    ``rule``; ``flag``: the command-line flag ("" for ``--field-name``, None for none);
    ``metavar`` and ``group`` place it in ``--help``."""
    metadata = {"help": help, "rule": rule, "flag": flag, "metavar": metavar, "group": group}
    return dataclasses.field(default=default, metadata=metadata)


def check_fields(config: Any) -> None:
    """Check every field of the dataclass ``config`` by its rule and store its value as the rule
    gives it back (lists as tuples, ints as floats for a number); the first bad one is a
    :class:`ConfigError` naming the setting and what it may be."""
    for field in dataclasses.fields(config):
        value = check(field.name, getattr(config, field.name), field.metadata["rule"])
        object.__setattr__(config, field.name, value)


def check(name: str, value: Any, rule: Rule) -> Any:
    """``value`` of the setting ``name``, as ``rule`` takes it, or a :class:`ConfigError`."""
    if value is None and rule.optional:
        return None
    if rule.kind == "whole":
        if isinstance(value, str) and value in rule.choices:
            return value
        return _whole(name, value, int(rule.low), int(rule.high), rule.choices)
    if rule.kind == "number":
        return _number(name, value, rule)
    if rule.kind == "choice":
        if value not in rule.choices:
            raise ConfigError(f"{name} must be one of {', '.join(rule.choices)}; got {value!r}")
        return value
    if rule.kind == "sizes":
        return _sizes(name, value, rule.empty)
    if rule.kind == "pair":
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise ConfigError(f"{name} must be two sides (H, W), got {value!r}")
        return tuple(
            _whole(f"{name}[{i}]", v, int(rule.low), int(rule.high)) for i, v in enumerate(value)
        )
    if rule.kind == "text":
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{name} must be a name or a path, got {value!r}")
        return value
    if rule.kind == "device":
        return check_device(value)
    if rule.kind == "module":
        if not isinstance(value, str) or not re.fullmatch(r"[\w.]+:[\w.]+", value):
            raise ConfigError(
                f"{name} must be an import path 'package.module:ClassName', got {value!r}"
            )
        return value
    raise ValueError(f"unknown kind of setting {rule.kind!r}")


def shown(value: Any) -> str:
    """``value`` for a message; an integer too long to print in full (Python refuses more than
    4300 digits) by its size."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**30:
        return f"a number of about {int(abs(value).bit_length() * math.log10(2)) + 1:,} digits"
    return repr(value)


def _whole(name: str, value: Any, low: int, high: int, words: tuple[str, ...] = ()) -> int:
    """A whole number (not a bool) from ``low`` to ``high``; from 1 up, the message says
    "positive" and "limit", the words of a count; it names the ``words`` the setting also
    takes."""
    whole = isinstance(value, int) and not isinstance(value, bool)
    also = "".join(f" or {word}" for word in words)
    if low == 1 and not (whole and value >= 1):
        raise ConfigError(f"{name} must be a positive whole number{also}, got {shown(value)}")
    if low == 1 and value > high:
        raise ConfigError(f"{name} = {shown(value)} is larger than the limit of {high}")
    if not (whole and low <= value <= high):
        raise ConfigError(
            f"{name} must be a whole number from {low:,} to {high:,}{also}, got {shown(value)}"
        )
    return value


def _number(name: str, value: Any, rule: Rule) -> float:
    finite = isinstance(value, float) and math.isfinite(value)
    if isinstance(value, int) and not isinstance(value, bool):
        finite = abs(value) <= sys.float_info.max  # math.isfinite raises for a larger int
    if not finite:
        raise ConfigError(f"{name} must be a finite number, got {shown(value)}")
    low, high = rule.low, rule.high
    if low is not None and (value <= low if rule.above else value < low):
        limit = "greater than" if rule.above else "at least"
        wording = "0 or more" if low == 0 and not rule.above else f"{limit} {low:g}"
        raise ConfigError(f"{name} must be {wording}, got {value!r}")
    if high is not None and (value >= high if rule.below else value > high):
        raise ConfigError(
            f"{name} must be {'below' if rule.below else 'at most'} {high:g}, got {value!r}"
        )
    return float(value)


def _sizes(name: str, value: Any, empty: bool) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{name} must be a list of layer sizes, got {value!r}")
    if not value and not empty:
        raise ConfigError(f"{name} needs at least one size")
    return tuple(_whole(f"{name}[{i}]", v, 1, MAX_UNITS) for i, v in enumerate(value))


def check_device(device: Any) -> str:
    """``device`` if it is ``auto``, ``cpu``, ``cuda``, ``cuda:N`` (N a whole number from 0 to
    MAX_CUDA_INDEX, written without leading zeros) or ``mps``; else a ConfigError. Whether the
    machine has that device is the engine's question (``resolve_device``)."""
    if device in ("auto", "cpu", "cuda", "mps"):
        return device
    index = re.fullmatch(r"cuda:(0|[1-9][0-9]*)", device) if isinstance(device, str) else None
    if index and int(index[1]) <= MAX_CUDA_INDEX:
        return device
    raise ConfigError(
        f"device must be auto, cpu, cuda, cuda:N (N from 0 to {MAX_CUDA_INDEX}) or mps; "
        f"got {device!r}"
    )


def from_dict(cls: type, data: Any, what: str) -> Any:
    """A config of class ``cls`` from a JSON object ``data`` (``what`` names it in messages):
    unknown keys refused, lists as tuples."""
    if not isinstance(data, dict):
        raise ConfigError(f"{what} must be a JSON object, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{what} has unknown setting(s): {', '.join(unknown)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    try:
        return cls(**values)
    except TypeError as exc:  # a value of the wrong kind that validation could not name
        raise ConfigError(f"{what} is invalid: {exc}") from None
