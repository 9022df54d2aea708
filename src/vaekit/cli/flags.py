"""The command line's vocabulary: argparse types that refuse a bad value in one line, the bounds
of the flags that are no setting, and the groups of flags several commands share.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from vaekit.config.limits import (
    BINARIZATIONS,
    DEVICES,
    ENGINES,
    MAX_SEED,
)
from vaekit.config.rules import check_device
from vaekit.config.settings import DATA, MODEL, TRAINING, ModelConfig, TrainConfig
from vaekit.draw import figures
from vaekit.errors import ConfigError, VaekitError
from vaekit.runs import layout
from vaekit.runs.inputs import SPLITS


class UsageError(VaekitError):
    """A command line that argparse could not parse."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


#: Bounds of integer flags: roomy for any real use, tight enough that a typo (10**9 for 10) is
#: refused at once instead of running for hours or exhausting memory.
MAX_IMAGES = 10_000  # images in one sample grid (with --grid-by-label, -n × classes)


MAX_GRID = 100  # reconstruct -n, manifold -n (n × n decoded images), interpolate --pairs, --steps


MAX_POINTS = 1_000_000  # scatter --max-points


def whole_number(low: int, high: int, words: tuple[str, ...] = ()) -> Callable[[str], int | str]:
    """An argparse ``type``: a whole number from ``low`` to ``high``, or one of ``words`` (such
    as auto); argparse's refusal names the flag and the range."""

    def whole_number(text: str) -> int | str:
        if text in words:
            return text
        try:
            value = int(text)
        except ValueError:
            also = "".join(f" nor {word}" for word in words)
            what = f"neither a whole number{also}" if words else "not a whole number"
            raise argparse.ArgumentTypeError(f"{text!r} is {what}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside the range {low:,} to {high:,}")
        return value

    return whole_number


def probability(text: str) -> float:
    """An argparse ``type``: a number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not strictly between 0 and 1")
    return value


def output_file(text: str) -> Path:
    """An argparse ``type`` for a file to write; a directory (or a name ending in a separator)
    is refused before anything is written."""
    if text.endswith(("/", os.sep)) or Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory; give a file name")
    if not Path(text).parent.is_dir():
        raise argparse.ArgumentTypeError(f"the folder {Path(text).parent} does not exist")
    return Path(text)


def picture_file(text: str) -> Path:
    """An argparse ``type`` for a picture to write: a file (not a directory) named .png, .jpg
    or .jpeg (see :func:`figures.image_path`)."""
    try:
        return figures.image_path(output_file(text))
    except ConfigError as exc:  # a ValueError, which argparse would report without its message
        raise argparse.ArgumentTypeError(str(exc)) from None


def device_name(text: str) -> str:
    """An argparse ``type``: a device :func:`vaekit.config.settings.check_device` accepts (auto,
    cpu, cuda, cuda:N, mps), refused with its message."""
    try:
        return check_device(text)
    except ConfigError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


DEVICE_HELP = f"{', '.join(DEVICES)} (default auto: cuda when PyTorch sees a GPU, else cpu)"


def add_settings_flags(p: argparse.ArgumentParser) -> None:
    """A flag for every ModelConfig and TrainConfig field that has one, in the groups of
    ``--help`` (model, training, data), each made from its field (:func:`setting_flag`); then
    the flags that are no field: --conditional (the classes come from the data's labels),
    --latent-dims (two fields at once), --quiet and --force."""
    groups = {name: p.add_argument_group(name) for name in (MODEL, TRAINING, DATA)}
    for config in (ModelConfig, TrainConfig):
        for field in dataclasses.fields(config):
            if field.metadata["flag"] is not None:
                flag, spec = setting_flag(field)
                groups[field.metadata["group"]].add_argument(flag, **spec)
    model, training = groups[MODEL], groups[TRAINING]
    model.add_argument(
        "--conditional", action="store_true", help="condition encoder and decoder on the label"
    )
    model.add_argument(
        "--latent-dims",
        type=int,
        nargs=2,
        metavar=("K1", "K2"),
        help="two stochastic layers: z1 of K1 and z2 of K2 dimensions (sets --latent-dim and "
        "--top-latent-dim)",
    )
    training.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    training.add_argument(
        "--force", action="store_true", help="replace the run in a non-empty --out directory"
    )


def flag_name(field: dataclasses.Field) -> str:
    """The flag of a settings field: its own (``--k``), else --field-name."""
    return field.metadata["flag"] or "--" + field.name.replace("_", "-")


def setting_flag(field: dataclasses.Field) -> tuple[str, dict[str, Any]]:
    """(flag, argparse keywords) of a settings field, from its rule, help and default. The
    default is None, so that a flag not given leaves the setting to a preset, a settings file or
    the field's own default; the help states the field's default. Whole numbers are refused by
    argparse, other values by the field's own check when the config is built."""
    rule, default = field.metadata["rule"], field.default
    spec: dict[str, Any] = {"dest": field.name, "metavar": field.metadata["metavar"]}
    if rule.kind == "choice":
        spec.update(choices=rule.choices, metavar=None)
    elif rule.kind in ("whole", "pair"):
        spec["type"] = whole_number(int(rule.low), int(rule.high), rule.choices)
        spec["nargs"] = 2 if rule.kind == "pair" else None
    elif rule.kind == "sizes":
        spec.update(type=int, nargs="*" if rule.empty else "+")
    elif rule.kind == "number":
        spec["type"] = float
    elif rule.kind == "device":
        spec["type"] = device_name
    shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
    spec["help"] = field.metadata["help"] + ("" if default is None else f" (default {shown})")
    return flag_name(field), spec


def add_trust_flag(p: argparse.ArgumentParser, what: str = "RUN") -> None:
    p.add_argument(
        "--trust-code",
        action="store_true",
        help=f"import the encoder_module or decoder_module that {what} names (importing a module "
        "runs its code: only for runs and files you trust; see docs/opening-runs.md)",
    )


def add_run_flags(p: argparse.ArgumentParser, out: bool = True) -> None:
    p.add_argument("run", type=Path, metavar="RUN", help="a run directory written by train")
    add_trust_flag(p)
    p.add_argument(
        "--seed", type=whole_number(0, MAX_SEED), default=0, help="random seed (default 0)"
    )
    p.add_argument("--engine", choices=ENGINES, help="engine to run it with (default: its own)")
    p.add_argument("--device", type=device_name, default="auto", help=DEVICE_HELP)
    add_checkpoint_flag(p)
    if out:
        p.add_argument(
            "--out",
            type=picture_file,
            help="picture to write, .png, .jpg or .jpeg (default: a new PNG in RUN named after "
            "the command's settings; train's own figures are never overwritten)",
        )


def add_checkpoint_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--checkpoint",
        choices=layout.WHICH,
        help="the weights to use: best (the best held-out -ELBO; the default of a run that kept "
        "them: --epochs auto, --keep best) or last (the last epoch's; the default otherwise)",
    )


def add_data_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        metavar="NAME|PATH",
        help="data set name or file (default: the run's own data set)",
    )
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        help="where named data sets live (default: the run's data directory when it holds "
        "them, else $VAEKIT_DATA_DIR, else the user cache)",
    )
    p.add_argument(
        "--split",
        choices=SPLITS,
        default="heldout",
        help="part of the run's own data: heldout (default: the validation split, else the test "
        "split), train (what it trained on), val, test or all; of --data NAME, train or test "
        "(default); a --data file is used whole",
    )
    p.add_argument("--binarize", choices=BINARIZATIONS, help="default: the run's protocol")
