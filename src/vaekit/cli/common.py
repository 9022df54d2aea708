"""What the commands share at run time: stopping cleanly on Ctrl-C, progress on stderr, a run's
data and labels as a command reads them, arrays written as .npy.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import numpy as np

from vaekit import disk
from vaekit.data import Dataset, classes
from vaekit.data.labels import class_labels
from vaekit.data.scaling import Scaling
from vaekit.draw import figures
from vaekit.errors import ConfigError
from vaekit.runs import layout
from vaekit.runs.inputs import run_data
from vaekit.text import plural


class Interrupted(Exception):
    """Ctrl-C or SIGTERM during training of the run in ``run_dir``."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(str(run_dir))
        self.run_dir = Path(run_dir)

    def message(self) -> str:
        if (self.run_dir / layout.STATE_FILE).exists():
            return (
                f"interrupted; every finished epoch is saved in {self.run_dir}; continue with: "
                f"vaekit train --resume --out {self.run_dir}"
            )
        return f"interrupted before the first epoch finished; nothing to resume in {self.run_dir}"


def _raise_interrupt(signum, frame) -> NoReturn:
    raise KeyboardInterrupt


@contextlib.contextmanager
def stopping_cleanly(run_dir: Path):
    """Turn Ctrl-C and SIGTERM during training into :class:`Interrupted`. Checkpoints are
    written atomically, so whatever the moment, the run holds only whole epochs."""
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted(run_dir) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def log_of(args: argparse.Namespace):
    return (lambda line: None) if args.quiet else print


def save_npy(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array.astype(np.float32), allow_pickle=False)
    disk.write_atomic(Path(path), buffer.getvalue())


def save_decoded_npy(run: Path, path: Path, images: np.ndarray) -> None:
    """Decoder means written as .npy in the data's own units (the run's scaling inverted)."""
    scaling = Scaling.load(run)
    save_npy(path, images if scaling is None else scaling.invert(images))
    print(f"wrote {path}")


def check_drawable(engine) -> None:
    if not figures.can_draw(engine.config.input_shape):
        raise ConfigError(f"inputs of shape {engine.config.input_shape} cannot be drawn as images")


def labels_for(engine, data: Dataset) -> np.ndarray | None:
    """The labels a conditional model needs, each one of its classes (None for an unconditional
    model)."""
    if not engine.config.conditional:
        return None
    if data.y is None:
        raise ConfigError(f"{data.name} has no labels, which this conditional model needs")
    return class_labels(data.y, data.name, len(data.x), engine.config.n_classes)


def label_code(run: Path, engine, label: str | None) -> int | None:
    """The code of the class ``--label`` names (a name of the run's classes, or a number), None
    without ``--label``; a model that is not conditional, or a label that is no class of it,
    raises :class:`ConfigError` in one line (naming the choices)."""
    if label is None:
        return None
    if not engine.config.conditional:
        raise ConfigError(f"{run} is not a conditional model; --label needs one")
    return classes.code_of(label, classes.load(run), engine.config.n_classes)


def label_texts(data: Dataset) -> list[str]:
    """Each example's label as a table shows it: its class name (its number for data without
    names), or "" for data without labels."""
    if data.y is None:
        return [""] * len(data.x)
    n_classes = int(data.y.max()) + 1 if len(data.y) else 0
    names = classes.names_or_numbers(data.classes, n_classes)
    return [names[code] for code in data.y]


def check_unconditional(engine, what: str) -> None:
    if engine.config.conditional:
        raise ConfigError(f"{what} is drawn for unconditional models only")


def command_data(args: argparse.Namespace, source: str | None, split: str) -> tuple[Dataset, str]:
    """:func:`vaekit.runs.inputs.run_data` for the command's RUN, --data-dir and --binarize."""
    return run_data(args.run, source, split, data_dir=args.data_dir, binarize_mode=args.binarize)


@contextlib.contextmanager
def reporting(
    args: argparse.Namespace, what: str, total: int
) -> Iterator[Callable[[int], None] | None]:
    """Show work on ``total`` examples on stderr (results go to stdout): a bar when stderr is a
    terminal, else one plain line as the part starts; nothing with --quiet. Yields the callback
    that the work calls with the number of examples finished so far (None: no bar)."""
    if args.quiet:
        yield None
    elif not sys.stderr.isatty():
        print(f"{what}: {plural(total, 'example')}", file=sys.stderr, flush=True)
        yield None
    else:
        from tqdm import tqdm  # imported when a bar is shown: it costs start-up time

        with tqdm(total=total, desc=what, unit="example", leave=False, file=sys.stderr) as bar:
            yield lambda done: bar.update(done - bar.n)
