"""The ``vaekit`` command line: parse, call the library, print, return an exit code.

Every error a user can cause ends in one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import NamedTuple, NoReturn

import numpy as np

from vaekit import __version__, disk
from vaekit.config.files import FROM_THE_DATA, read_settings, to_toml
from vaekit.config.presets import PRESETS, Preset, get_preset
from vaekit.config.settings import (
    ACTIVATIONS,
    ARCHITECTURES,
    BINARIZATIONS,
    DATA_ON_DEVICE,
    DEVICES,
    ENGINES,
    FLOWS,
    IMAGE_MODES,
    KEEP,
    LIKELIHOODS,
    LOGGERS,
    LR_SCHEDULES,
    MAX_CLASSES,
    MAX_EPOCHS,
    MAX_IMAGE_SIDE,
    MAX_IW_SAMPLES,
    MAX_SEED,
    MAX_UNITS,
    MAX_VAL_FRACTION,
    OBJECTIVES,
    OPTIMIZERS,
    PRECISIONS,
    PRIORS,
    SCALINGS,
    SIGMA_MODES,
    ModelConfig,
    TrainConfig,
    check_device,
    default_prior,
)
from vaekit.data import Dataset, dataset_status, load_raw, shapes
from vaekit.data.datasets import absolute_source
from vaekit.data.labels import class_labels
from vaekit.data.pipeline import TrainingData
from vaekit.data.scaling import Scaling
from vaekit.draw import figures, gallery, geometry
from vaekit.engines.sampling import sample_prior
from vaekit.engines.torch import distributed
from vaekit.errors import ConfigError, VaekitError
from vaekit.measure.evaluation import (
    evaluate_elbo,
    iwae_log_likelihood,
    latent_statistics,
    outlier_threshold,
)
from vaekit.runs import best_weights, checkpoint, config_file, layout, loading
from vaekit.runs.inputs import SPLITS, held_out, part_read, run_data
from vaekit.runs.metrics import CURVE_KEYS, read_metrics
from vaekit.text import plural
from vaekit.train.start import resume_run, start_run

DEMO_DIR = Path("runs") / "demo"
DEMO_EPOCHS = 20


class UsageError(VaekitError):
    """A command line that argparse could not parse."""


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
def _stopping_cleanly(run_dir: Path):
    """Turn Ctrl-C and SIGTERM during training into :class:`Interrupted`. Checkpoints are
    written atomically, so whatever the moment, the run holds only whole epochs."""
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted(run_dir) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


#: Bounds of integer flags: roomy for any real use, tight enough that a typo (10**9 for 10) is
#: refused at once instead of running for hours or exhausting memory.
MAX_IMAGES = 10_000  # images in one sample grid (with --grid-by-label, -n × classes)
MAX_GRID = 100  # reconstruct -n, manifold -n (n × n decoded images), interpolate --pairs, --steps
MAX_POINTS = 1_000_000  # scatter --max-points


def _whole(low: int, high: int) -> Callable[[str], int]:
    """An argparse ``type``: a whole number from ``low`` to ``high``; argparse's refusal names
    the flag and the range."""

    def whole_number(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside the range {low:,} to {high:,}")
        return value

    return whole_number


def _probability(text: str) -> float:
    """An argparse ``type``: a number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not strictly between 0 and 1")
    return value


def _output_file(text: str) -> Path:
    """An argparse ``type`` for a file to write; a directory (or a name ending in a separator)
    is refused before anything is written."""
    if text.endswith(("/", os.sep)) or Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory; give a file name")
    if not Path(text).parent.is_dir():
        raise argparse.ArgumentTypeError(f"the folder {Path(text).parent} does not exist")
    return Path(text)


def _picture_file(text: str) -> Path:
    """An argparse ``type`` for a picture to write: a file (not a directory) named .png, .jpg
    or .jpeg (see :func:`figures.image_path`)."""
    try:
        return figures.image_path(_output_file(text))
    except ConfigError as exc:  # a ValueError, which argparse would report without its message
        raise argparse.ArgumentTypeError(str(exc)) from None


def _device(text: str) -> str:
    """An argparse ``type``: a device :func:`vaekit.config.settings.check_device` accepts (auto,
    cpu, cuda, cuda:N, mps), refused with its message."""
    try:
        return check_device(text)
    except ConfigError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


DEVICE_HELP = f"{', '.join(DEVICES)} (default auto: cuda when PyTorch sees a GPU, else cpu)"


# --- train and demo ----------------------------------------------------------------------------

#: Settings a command line can give, by config (input_shape and n_classes come from the data).
MODEL_FIELDS = tuple(
    f.name for f in fields(ModelConfig) if f.name not in ("input_shape", "n_classes")
)
TRAIN_FIELDS = tuple(f.name for f in fields(TrainConfig))
#: Settings --resume lets differ from the run's: train longer, read the data from where it is now,
#: continue on another device (a run trained on a GPU resumes on a CPU, and back).
RESUME_MAY_CHANGE = ("epochs", "data_dir", "device", "patience")


def _given(args: argparse.Namespace, names: Sequence[str]) -> dict:
    values = {name: getattr(args, name, None) for name in names}
    return {
        name: value for name, value in values.items() if value is not None and value is not False
    }


class Settings(NamedTuple):
    """What a command line asks for: its preset (--preset, else the one a --config file names),
    the model and training settings (the preset's, then the --config file's, then the flags'),
    whether the model is conditional, and which settings came from the --config file."""

    preset: Preset | None
    model: dict
    train: dict
    conditional: bool
    from_file: frozenset


def _settings(args: argparse.Namespace) -> Settings:
    """The settings of a command line (see :class:`Settings`), with a data file or folder and
    --data-dir made absolute (relative to the working directory)."""
    trusted = getattr(args, "trust_code", False)
    file = read_settings(args.config, trust_code=trusted) if getattr(args, "config", None) else None
    name = getattr(args, "preset", None) or (file.preset if file else None)
    preset = get_preset(name) if name else None
    model = {
        **(preset.model if preset else {}),
        **(file.model if file else {}),
        **_given(args, MODEL_FIELDS),
    }
    train = {
        **(preset.train if preset else {}),
        **(file.train if file else {}),
        **_given(args, TRAIN_FIELDS),
    }
    if getattr(args, "latent_dims", None):
        model["latent_dim"], model["top_latent_dim"] = args.latent_dims
    if isinstance(train.get("data"), str):
        train["data"] = absolute_source(train["data"])
    if isinstance(train.get("data_dir"), str):
        train["data_dir"] = os.path.abspath(train["data_dir"])
    conditional = bool(
        getattr(args, "conditional", False)
        or (file is not None and file.conditional)
        or (preset is not None and preset.conditional)
    )
    from_file = frozenset({*file.model, *file.train}) if file else frozenset()
    return Settings(preset, model, train, conditional, from_file)


def _flag(name: str) -> str:
    return "--k" if name == "iw_samples" else "--" + name.replace("_", "-")


def _shown(value) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value)) or "(none)"
    return "none" if value is None else str(value)


def _resume_conflicts(args: argparse.Namespace, run: Path) -> list[str]:
    """The settings of a --resume command line that differ from the run's own, each as
    '--flag VALUE (the run has VALUE)'. Values are compared as the configs hold them, so
    '--hidden 32' agrees with (32,), a relative path with the stored absolute one, and a
    preset's settings with the run's."""
    model, train, _ = config_file.read_config(run)
    train = replace(train, data=absolute_source(train.data))
    wanted = _settings(args)
    given = {**_given(args, MODEL_FIELDS), **_given(args, TRAIN_FIELDS)}
    conflicts = []
    for stored, settings in ((model, wanted.model), (train, wanted.train)):
        for name, value in settings.items():
            if name in RESUME_MAY_CHANGE:
                continue
            try:
                candidate = replace(stored, **{name: value})
            except ConfigError:
                candidate = None  # a value this run cannot have
            same = candidate is not None and (
                candidate == stored
                or (name == "decoder_hidden" and candidate.decoder_sizes == stored.decoder_sizes)
            )
            if not same:
                source = (
                    ""
                    if name in given
                    else f"from --config {args.config}; "
                    if name in wanted.from_file
                    else f"from --preset {wanted.preset.name}; "
                )
                conflicts.append(
                    f"{_flag(name)} {_shown(value)} ({source}the run has "
                    f"{_shown(getattr(stored, name))})"
                )
    if wanted.conditional and not model.conditional:
        conflicts.append("--conditional (the run is unconditional)")
    if args.force:
        conflicts.append("--force (resuming never replaces the run)")
    return conflicts


def _new_run_dir() -> Path:
    base = Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def _train_new(args: argparse.Namespace, created_by: str, force: bool, out: Path) -> int:
    settings = _settings(args)
    train = TrainConfig(**settings.train)
    size, mode = train.image_size, train.image_mode
    train_set, test_set = (
        load_raw(train.data, split, train.data_dir, image_size=size, image_mode=mode)
        for split in ("train", "test")
    )
    data = TrainingData.prepare(train, train_set, test_set)
    n_classes = 0
    if settings.conditional:
        if train_set.y is None:
            raise ConfigError(f"a conditional model needs labels, and {train.data} has none")
        n_classes = int(train_set.y.max()) + 1
    prior = settings.model.get("prior") or default_prior(n_classes, train.engine)
    model = ModelConfig(
        input_shape=tuple(data.train.shape[1:]),
        n_classes=n_classes,
        **{**settings.model, "prior": prior},
    )
    kind = f"conditional ({plural(n_classes, 'class', 'classes')}) " if n_classes else ""
    group = distributed.from_environment()
    processes = f" on {group.world_size} processes" if group else ""
    held = data.held_out()
    holding = "" if held is None else f", {len(held[0]):,} held out ({held[2]})"
    announcement = (
        f"training {model.parameter_count:,}-parameter {kind}{model.arch} VAE on {train.data} "
        f"({plural(len(data.train), 'example')}{holding}, scale {data.scaling.method}) with the "
        f"{train.engine} engine{processes} into {out}"
    )
    with _stopping_cleanly(out):
        history = start_run(
            model,
            train,
            out,
            data=data,
            force=force,
            created_by=created_by,
            progress=not args.quiet,
            log=_logger(args),
            on_start=lambda: print(announcement, flush=True),
        )
    _print_summary(history[-1], out)
    return 0


def _logger(args: argparse.Namespace):
    return (lambda line: None) if args.quiet else print


def _print_summary(last: dict, out: Path) -> None:
    if "val_loss" in last:
        print(
            f"validation -ELBO after {plural(last['epoch'], 'epoch')}: "
            f"{last['val_loss']:.2f} nats per example "
            f"(recon {last['val_recon']:.2f}, KL {last['val_kl']:.2f})"
        )
    if "test_loss" in last:
        print(
            f"test -ELBO after {plural(last['epoch'], 'epoch')}: {last['test_loss']:.2f} "
            "nats per example "
            f"(recon {last['test_recon']:.2f}, KL {last['test_kl']:.2f})"
        )
    if "val_loss" not in last and "test_loss" not in last:
        epochs = plural(last["epoch"], "epoch")
        print(f"training -ELBO after {epochs}: {last['loss']:.2f} nats per example")
    best = best_weights.read_best(out)
    if best is not None:
        print(
            f"best held-out -ELBO: {best['loss']:.2f} nats at epoch {best['epoch']} "
            f"(kept in {out / layout.BEST_WEIGHTS_FILE}; --checkpoint best loads it)"
        )
    print(f"run saved in {out}")


def cmd_train(args: argparse.Namespace) -> int:
    group = distributed.from_environment()
    if group is not None and args.out is None:
        raise ConfigError("under torchrun, give the run directory with --out (the same everywhere)")
    quiet = group is not None and not group.is_main  # rank 0 speaks for the group
    try:
        with contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext():
            return _train(args)
    finally:
        distributed.stop()


def _train(args: argparse.Namespace) -> int:
    if args.resume:
        if args.out is None:
            raise ConfigError("--resume needs --out RUN, the run directory to continue")
        checkpoint.check_resumable(args.out)
        conflicts = _resume_conflicts(args, args.out)
        if conflicts:
            raise ConfigError(
                f"--resume continues {args.out} with its own settings; these differ: "
                + ", ".join(conflicts)
            )
        with _stopping_cleanly(args.out):
            history = resume_run(
                args.out,
                epochs=args.epochs,
                patience=args.patience,
                data_dir=_settings(args).train.get("data_dir"),
                device=args.device,
                progress=not args.quiet,
                log=_logger(args),
            )
        _print_summary(history[-1], args.out)
        return 0
    if args.data is None and args.preset is None and args.config is None:
        raise ConfigError(
            "train needs --data NAME|PATH (see 'vaekit datasets'), --preset NAME or --config FILE"
        )
    return _train_new(args, "train", args.force, args.out or _new_run_dir())


def cmd_demo(args: argparse.Namespace) -> int:
    out = args.out
    force = args.force
    if not force and out.is_dir() and not layout.holds_nothing(out):
        if not (out / layout.CONFIG_FILE).exists():
            raise ConfigError(f"{out} is not empty and holds no run; choose another --out")
        if config_file.read_record(out).get("created_by") != "demo":
            raise ConfigError(
                f"{out} holds a run that demo did not make; pass --force to replace it, or "
                "choose another --out"
            )
        force = True  # a new demo replaces the old one
    args.data = "mnist-small"
    _train_new(args, "demo", force, out)
    pictures = sorted(p.name for p in out.glob("*.png"))
    print(f"pictures in {out}: {', '.join(pictures)}")
    return 0


# --- using a run -------------------------------------------------------------------------------


def cmd_sample(args: argparse.Namespace) -> int:
    n = args.n if args.n is not None else (10 if args.grid_by_label else 64)
    engine = loading.open_run(args.run, args.engine, args.device, args.checkpoint)
    classes = engine.config.n_classes
    if (args.label is not None or args.grid_by_label) and not classes:
        flag = "--label" if args.label is not None else "--grid-by-label"
        raise ConfigError(f"{args.run} is not a conditional model; {flag} needs one")
    if args.grid_by_label and n * classes > MAX_IMAGES:
        raise ConfigError(
            f"-n {n} with --grid-by-label draws {n * classes:,} images ({classes} classes); "
            f"the most is {MAX_IMAGES:,}, so -n must be from 1 to {MAX_IMAGES // classes:,}"
        )
    if args.grid_by_label:
        out = args.out or args.run / f"samples-by-label-n{n}-seed{args.seed}.png"
        gallery.draw_label_grid(engine, out, per_class=n, seed=args.seed)
        print(f"wrote {out} ({plural(classes, 'row')}, one per class, {plural(n, 'sample')} each)")
        return 0
    which = f"-label{args.label}" if args.label is not None else ""
    out = args.out or args.run / f"samples{which}-n{n}-seed{args.seed}.png"
    images = sample_prior(engine, n, seed=args.seed, labels=args.label)
    if figures.can_draw(engine.config.input_shape):
        title = f"{plural(n, 'sample')} from the prior (seed {args.seed})"
        if args.label is not None:
            title = f"{plural(n, 'sample')} of class {args.label} (seed {args.seed})"
        figures.save_sample_grid(images, out, title)
        print(f"wrote {out}")
    if args.npy:
        _save_decoded_npy(args.run, args.npy, images)
    return 0


def shown_preset(preset: Preset) -> tuple[dict, dict, dict]:
    """(model, train, name and description): a preset as ``presets --show`` prints it, every
    setting resolved, the data's shape and class count written as "from the data"."""
    # a stand-in class count, so that the defaults that follow conditioning (the prior) resolve
    classes = 2 if preset.conditional else 0
    engine = preset.train.get("engine", TrainConfig.engine)
    prior = preset.model.get("prior") or default_prior(classes, engine)
    model = ModelConfig(**{**preset.model, "prior": prior}, n_classes=classes).to_dict()
    model["n_classes"] = FROM_THE_DATA if preset.conditional else 0
    model["input_shape"] = FROM_THE_DATA
    train = TrainConfig(**preset.train).to_dict()
    return model, train, {"name": preset.name, "description": preset.description}


def cmd_presets(args: argparse.Namespace) -> int:
    if args.show:
        model, train, meta = shown_preset(get_preset(args.show))
        if args.format == "toml":
            print(to_toml(model, train, meta), end="")
        else:
            record = {**meta, "model": model, "train": train}
            print(json.dumps(record, indent=2, ensure_ascii=False))
        return 0
    width = max(len(name) for name in PRESETS)
    for preset in PRESETS.values():
        print(f"{preset.name:<{width}}  {preset.description}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from vaekit.api.export import EXPORT_FILES, export_onnx  # torch's exporter: only when asked for

    out = export_onnx(args.run, args.out, which=args.checkpoint)
    print(f"wrote {', '.join(EXPORT_FILES)} ({args.checkpoint} weights) to {out}")
    return 0


def _save_npy(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array.astype(np.float32), allow_pickle=False)
    disk.write_atomic(Path(path), buffer.getvalue())


def _save_decoded_npy(run: Path, path: Path, images: np.ndarray) -> None:
    """Decoder means written as .npy in the data's own units (the run's scaling inverted)."""
    scaling = Scaling.load(run)
    _save_npy(path, images if scaling is None else scaling.invert(images))
    print(f"wrote {path}")


def cmd_reconstruct(args: argparse.Namespace) -> int:
    engine = loading.open_run(args.run, args.engine, args.device, args.checkpoint)
    data = _run_data(args, args.data, args.split)[0]
    y = _labels(engine, data)
    out = args.out or args.run / f"reconstructions-n{args.n}-seed{args.seed}.png"
    gallery.draw_reconstructions(engine, data.x[: args.n], out, args.seed, y)
    print(f"wrote {out}")
    return 0


def _drawable(engine) -> None:
    if not figures.can_draw(engine.config.input_shape):
        raise ConfigError(f"inputs of shape {engine.config.input_shape} cannot be drawn as images")


def _labels(engine, data: Dataset) -> np.ndarray | None:
    """The labels a conditional model needs, each one of its classes (None for an unconditional
    model)."""
    if not engine.config.conditional:
        return None
    if data.y is None:
        raise ConfigError(f"{data.name} has no labels, which this conditional model needs")
    return class_labels(data.y, data.name, len(data.x), engine.config.n_classes)


def _unconditional(engine, what: str) -> None:
    if engine.config.conditional:
        raise ConfigError(f"{what} is drawn for unconditional models only")


def cmd_manifold(args: argparse.Namespace) -> int:
    engine = loading.open_run(args.run, args.engine, args.device, args.checkpoint)
    _drawable(engine)
    _unconditional(engine, "the latent manifold")
    pca_plane = engine.config.latent_dim > 2 and args.dims is None
    x = _run_data(args, args.data, args.split)[0].x if pca_plane else None
    dims = "" if args.dims is None else f"-dims{args.dims[0]}-{args.dims[1]}"
    out = args.out or args.run / f"manifold-n{args.n}{dims}.png"
    gallery.draw_manifold(engine, out, x, n=args.n, dims=args.dims)
    print(f"wrote {out}")
    return 0


def cmd_traverse(args: argparse.Namespace) -> int:
    engine = loading.open_run(args.run, args.engine, args.device, args.checkpoint)
    if args.label is not None and not engine.config.conditional:
        raise ConfigError(f"{args.run} is not a conditional model; --label needs one")
    k = engine.config.latent_dim
    if args.dims is not None and any(d >= k for d in args.dims):
        raise ConfigError(f"--dims must be latent indices in 0..{k - 1}; got {args.dims}")
    data = _run_data(args, args.data, args.split)[0]
    y = _labels(engine, data)
    base = None
    if args.data is not None or args.index is not None:
        index = args.index or 0
        if index >= len(data.x):
            raise ConfigError(f"--index {index} is past the {plural(len(data.x), 'input')}")
        i = slice(index, index + 1)
        base = engine.encode(data.x[i], None if y is None else y[i])[0][0]
    out = args.out or args.run / _traversals_name(args)
    images = gallery.draw_traversals(
        engine, out, data.x, y, dims=args.dims, steps=args.steps, base=base, label=args.label
    )
    if figures.can_draw(engine.config.input_shape):
        print(f"wrote {out}")
    if args.npy:
        _save_decoded_npy(args.run, args.npy, images)
    return 0


def _traversals_name(args: argparse.Namespace) -> str:
    """The default file of ``traverse``: its settings in the name, never train's
    traversals.png."""
    parts = ["traversals"]
    if args.dims is not None:
        parts.append("dims" + "-".join(map(str, args.dims)))
    if args.index is not None:
        parts.append(f"index{args.index}")
    if args.label is not None:
        parts.append(f"label{args.label}")
    return "-".join([*parts, f"steps{args.steps}"]) + ".png"


def cmd_scatter(args: argparse.Namespace) -> int:
    geometry.check_projection(args.method)  # t-SNE without scikit-learn: before any work
    engine = loading.open_run(args.run, args.engine, args.device, args.checkpoint)
    data = _run_data(args, args.data, args.split)[0]
    y = _labels(engine, data)
    with _progress(args, "encoding", min(len(data.x), args.max_points)) as progress:
        latents = gallery.posterior_means(
            engine, data.x, y, limit=args.max_points, progress=progress
        )
    labels = None if data.y is None else data.y[: len(latents)]
    out = args.out or args.run / f"scatter-{args.method}-n{len(latents)}.png"
    figures.save_latent_scatter(latents, labels, out, method=args.method)
    print(f"wrote {out}")
    return 0


def cmd_interpolate(args: argparse.Namespace) -> int:
    engine = loading.open_run(args.run, args.engine, args.device, args.checkpoint)
    _drawable(engine)
    _unconditional(engine, "an interpolation")
    x = _run_data(args, args.data, args.split)[0].x
    out = args.out or args.run / f"interpolations-{args.method}-seed{args.seed}.png"
    gallery.draw_interpolations(
        engine, x, out, pairs=args.pairs, steps=args.steps, method=args.method, seed=args.seed
    )
    print(f"wrote {out}")
    return 0


def cmd_curves(args: argparse.Namespace) -> int:
    config_file.read_config(args.run)  # a run, or a clear error
    records = read_metrics(args.run, CURVE_KEYS)
    if not records:
        raise ConfigError(f"{args.run} has no finished epochs in metrics.jsonl yet")
    out = args.out or args.run / f"curves-epoch{records[-1]['epoch']}.png"
    figures.save_training_curves(records, out)
    print(f"wrote {out}")
    return 0


def _run_data(args: argparse.Namespace, source: str | None, split: str) -> tuple[Dataset, str]:
    """:func:`vaekit.runs.inputs.run_data` for the command's RUN, --data-dir and --binarize."""
    return run_data(args.run, source, split, data_dir=args.data_dir, binarize_mode=args.binarize)


@contextlib.contextmanager
def _progress(
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


def cmd_evaluate(args: argparse.Namespace) -> int:
    engine = loading.open_run(args.run, args.engine, args.device, args.checkpoint)
    data, mode = _run_data(args, args.data, args.split)
    started = time.perf_counter()
    y = _labels(engine, data)
    with _progress(args, "ELBO", len(data.x)) as progress:
        elbo = evaluate_elbo(engine, data.x, y=y, seed=args.seed, progress=progress)
    with _progress(args, "active units", len(data.x)) as progress:
        latents = latent_statistics(engine, data.x, y=y, progress=progress)
    result = {
        "elbo": -elbo.loss,
        "recon": elbo.recon,
        "kl": elbo.kl,
        "active_units": latents.active_units,
        "kl_per_dim": (  # "n/a": the prior has no closed-form KL per dimension (a mixture)
            [round(float(v), 4) for v in latents.kl_per_dim]
            if np.isfinite(latents.kl_per_dim).all()
            else "n/a"
        ),
        "n": elbo.n,
        "protocol": {
            "data": data.name,
            "split": part_read(config_file.read_config(args.run)[1], args.data, args.split),
            "binarize": mode,
            "iw_samples": args.iw_samples,
            "seed": args.seed,
            "engine": engine.name,
        },
    }
    if args.iw_samples:
        with _progress(args, f"IWAE bound, k={args.iw_samples}", len(data.x)) as progress:
            log_px = iwae_log_likelihood(
                engine, data.x, args.iw_samples, y=y, seed=args.seed, progress=progress
            )
        result["nll"] = -float(log_px.mean())
    result["seconds"] = round(time.perf_counter() - started, 2)
    if args.json:
        print(json.dumps(result))
        return 0
    p = result["protocol"]
    print(
        f"{args.run}: {p['data']} {p['split']} ({plural(result['n'], 'example')}), binarize "
        f"{p['binarize']}, {engine.name} engine, seed {args.seed}"
    )
    print(f"  ELBO                {result['elbo']:10.2f} nats per example")
    print(f"    reconstruction    {result['recon']:10.2f}  (−log p(x|z))")
    print(f"    KL                {result['kl']:10.2f}")
    if "nll" in result:
        print(f"  NLL (IWAE, k={args.iw_samples}) {result['nll']:8.2f}  (−log p(x) estimate)")
    print(f"  active units        {result['active_units']:7d} of {engine.config.latent_dim}")
    print(f"  ({result['seconds']:.1f} s)")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    engine = loading.open_run(args.run, args.engine, args.device, args.checkpoint)
    inputs = [(source, _run_data(args, source, "all")[0]) for source in args.inputs]
    labels_of = [_labels(engine, data) for _, data in inputs]  # all checked before any work
    threshold = None
    if args.threshold_fpr is not None:
        reference, name = held_out(args.run, data_dir=args.data_dir, binarize_mode=args.binarize)
        reference_labels = _labels(engine, reference)
        with _progress(args, f"scoring the {name} data", len(reference.x)) as progress:
            scores = _log_px(args, engine, reference.x, reference_labels, progress)
        threshold = outlier_threshold(scores, args.threshold_fpr)
    header = ["input", "index", "label", "log_px"]
    rows: list[list] = []
    summary = []
    for (source, data), y in zip(inputs, labels_of, strict=True):
        with _progress(args, f"scoring {source}, k={args.iw_samples}", len(data.x)) as progress:
            log_px = _log_px(args, engine, data.x, y, progress)
        labels = data.y if data.y is not None else [""] * len(data.x)
        cell = csv_name(source)
        rows += [
            [cell, i, label, f"{v:.4f}"]
            for i, (label, v) in enumerate(zip(labels, log_px, strict=True))
        ]
        if threshold is not None:
            flags = log_px < threshold
            for row, flag in zip(rows[-len(log_px) :], flags, strict=True):
                row += [f"{threshold:.4f}", int(flag)]
        flagged = float(np.mean(log_px < threshold)) if threshold is not None else None
        summary.append(
            (source, len(log_px), float(log_px.mean()), float(np.median(log_px)), flagged)
        )
    if threshold is not None:
        header += ["threshold", "anomaly"]
    text = csv_text(header, rows)
    if args.out is None:
        sys.stdout.write(text)
        if threshold is not None and not args.quiet:
            print(_threshold_line(args, threshold, name, len(scores)), file=sys.stderr)
        return 0
    disk.write_atomic(args.out, text.encode())
    width = max(len(s[0]) for s in summary)
    print(f"log p(x) estimates (IWAE, k={args.iw_samples}), nats per example; wrote {args.out}")
    if threshold is not None:
        print(_threshold_line(args, threshold, name, len(scores)))
    flag_title = "  flagged" if threshold is not None else ""
    print(f"{'input':<{width}}  {'n':>6}  {'mean':>9}  {'median':>9}{flag_title}")
    for source, n, mean, median, flagged in summary:
        flag = f"  {100 * flagged:6.2f}%" if flagged is not None else ""
        print(f"{source:<{width}}  {n:>6}  {mean:>9.2f}  {median:>9.2f}{flag}")
    return 0


def csv_text(header: list[str], rows: list[list]) -> str:
    """A CSV table (RFC 4180: cells with a comma, a quote or a line break are quoted), lines
    ending in \\n."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def csv_name(name: str) -> str:
    """A file name as a CSV cell, losslessly: its bytes as UTF-8, with ``%`` and each byte that
    is not part of UTF-8 text percent-encoded (``%25``, ``%FF``), so that
    ``os.fsdecode(urllib.parse.unquote_to_bytes(cell))`` gives the name back."""
    text = os.fsencode(name).decode("utf-8", "surrogateescape")
    return "".join(
        f"%{ord(c) - 0xDC00:02X}" if "\udc80" <= c <= "\udcff" else "%25" if c == "%" else c
        for c in text
    )


def _log_px(args: argparse.Namespace, engine, x: np.ndarray, y, progress) -> np.ndarray:
    """The IWAE estimate of log p(x) of every example ``x`` (labels ``y``) with the command's k
    and seed, nats."""
    return iwae_log_likelihood(engine, x, args.iw_samples, y=y, seed=args.seed, progress=progress)


def _threshold_line(args: argparse.Namespace, threshold: float, name: str, n: int) -> str:
    return (
        f"anomaly threshold {threshold:.2f} nats: at most a share {args.threshold_fpr:g} of the "
        f"log p(x) of {plural(n, name + ' example')} lies below it; inputs below it are flagged "
        "(anomaly 1)"
    )


def cmd_serve(args: argparse.Namespace) -> int:
    from vaekit.serve.app import create_app
    from vaekit.serve.explorer import Explorer
    from vaekit.serve.server import allowed_hosts, bind, serve, url_of

    hosts = allowed_hosts(args.host, args.allowed_host)
    sock = bind(args.host, args.port)  # a busy port fails before the model loads
    with sock:
        explorer = Explorer.open(args.run, args.engine, args.device, args.checkpoint)
        app = create_app(explorer, allowed_hosts=hosts)
        print(f"vaekit explorer for {args.run}: {url_of(sock)}  (API: /docs; Ctrl-C stops)")
        if hosts == ("*",):
            print(
                f"answering any Host header on {args.host}; --allowed-host NAME answers only "
                "the names you give"
            )
        serve(app, sock)
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    suffix = args.out.suffix.lower()
    if suffix not in (".npy", ".npz", ".csv"):
        raise ConfigError("--out must end in .npy (means), .npz (mu, logvar, y) or .csv")
    engine = loading.open_run(args.run, args.engine, args.device, args.checkpoint)
    data, _ = _run_data(args, args.data, args.split)
    mu, logvar = engine.encode(data.x, _labels(engine, data))
    buffer = io.BytesIO()
    if suffix == ".npy":
        np.save(buffer, mu, allow_pickle=False)
    elif suffix == ".npz":
        arrays = {"mu": mu, "logvar": logvar}
        if data.y is not None:
            arrays["y"] = data.y
        np.savez(buffer, **arrays)
    else:
        k = mu.shape[1]
        header = [f"mu_{i}" for i in range(k)] + [f"logvar_{i}" for i in range(k)] + ["label"]
        labels = data.y if data.y is not None else [""] * len(mu)
        rows = [
            [*(f"{v:.6g}" for v in (*m, *lv)), label]
            for m, lv, label in zip(mu, logvar, labels, strict=True)
        ]
        buffer.write(csv_text(header, rows).encode())
    disk.write_atomic(args.out, buffer.getvalue())
    print(
        f"wrote posterior {'means' if suffix == '.npy' else 'means and log-variances'} of "
        f"{plural(len(mu), 'example')} ({plural(mu.shape[1], 'dimension')}) to {args.out}"
    )
    return 0


def cmd_quality(args: argparse.Namespace) -> int:
    from vaekit.measure.quality import score_run  # torch and the classifier, on demand

    result = score_run(
        args.run,
        args.n,
        args.seed,
        engine_name=args.engine,
        device=args.device,
        which=args.checkpoint,
        data_dir=args.data_dir,
    )
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"{result['n']:,} samples against {result['n_real']:,} {result['data']} test images "
        f"(features of the {result['classifier']} classifier; not comparable to published FID)\n"
        f"Frechet distance {result['fd']:.3f}  precision {result['precision']:.3f}  "
        f"recall {result['recall']:.3f}  confidence {result['confidence']:.3f}  "
        f"entropy {result['entropy']:.3f} nats"
    )
    return 0


def cmd_disentanglement(args: argparse.Namespace) -> int:
    from vaekit.measure import run_disentanglement as rd  # scikit-learn and torch, on demand

    result = rd.score_run(
        args.run,
        args.n,
        args.seed,
        engine_name=args.engine,
        device=args.device,
        which=args.checkpoint,
    )
    path = rd.write_result(args.run, result)
    print(json.dumps(result) if args.json else f"{rd.table(result)}\nwrote {path}")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    rows = dataset_status(args.data_dir)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        state = "present" if r["present"] else "absent "
        print(f"{r['name']:<{width}}  {state}  {r['location']}  — {r['description']}")
    return 0


# --- the parser --------------------------------------------------------------------------------


def _add_training_flags(p: argparse.ArgumentParser) -> None:
    m = p.add_argument_group("model")
    m.add_argument(
        "--hidden",
        type=int,
        nargs="+",
        metavar="UNITS",
        help="encoder hidden layer sizes (default 400)",
    )
    m.add_argument(
        "--decoder-hidden",
        type=int,
        nargs="*",
        metavar="UNITS",
        help="decoder hidden sizes (default: the encoder's, reversed)",
    )
    m.add_argument("--latent-dim", type=int, help="size of z (default 20)")
    m.add_argument("--activation", choices=ACTIVATIONS, help="hidden activation (default relu)")
    m.add_argument("--likelihood", choices=LIKELIHOODS, help="p(x|z) (default bernoulli)")
    m.add_argument("--sigma", type=float, help="Gaussian σ, fixed or initial (default 1.0)")
    m.add_argument("--learn-sigma", choices=SIGMA_MODES, help="learn σ (default fixed)")
    m.add_argument(
        "--beta", type=float, help="KL weight β (default 1, the true ELBO); tcvae: the TC weight"
    )
    m.add_argument("--arch", choices=ARCHITECTURES, help="mlp (default) or conv (deconvolution)")
    m.add_argument(
        "--conv-channels", type=int, nargs="+", metavar="C", help="conv channels (default 32 64)"
    )
    m.add_argument(
        "--conditional", action="store_true", help="condition encoder and decoder on the label"
    )
    m.add_argument(
        "--free-bits", type=float, metavar="NATS", help="minimum KL per latent dimension"
    )
    m.add_argument(
        "--prior",
        choices=PRIORS,
        help="p(z): standard N(0, I) (default), vamp (VampPrior; per class with --conditional, "
        "its default on the torch engine), mog (learned mixture of Gaussians) or class (a "
        "learned Gaussian per class; the default of --conditional on the numpy engine)",
    )
    m.add_argument(
        "--prior-components",
        type=int,
        metavar="C",
        help="pseudo-inputs (vamp) or mixture components (mog) (default 500)",
    )
    m.add_argument(
        "--latent-dims",
        type=int,
        nargs=2,
        metavar=("K1", "K2"),
        help="two stochastic layers: z1 of K1 and z2 of K2 dimensions (sets --latent-dim and "
        "--top-latent-dim)",
    )
    m.add_argument(
        "--top-latent-dim", type=int, metavar="K2", help="size of a second stochastic layer z2"
    )
    m.add_argument(
        "--top-hidden",
        type=int,
        nargs="+",
        metavar="UNITS",
        help="hidden sizes between z1 and z2 (default 100 100)",
    )
    m.add_argument("--flow", choices=FLOWS, help="none (default) or iaf: a flow on q(z|x)")
    m.add_argument("--flow-steps", type=int, metavar="N", help="flow steps (default 2)")
    m.add_argument(
        "--flow-hidden",
        type=int,
        nargs="+",
        metavar="UNITS",
        help="hidden sizes of each flow step's MADE (default 256 256)",
    )
    m.add_argument(
        "--encoder-module",
        metavar="MODULE:CLASS",
        help="your own torch.nn.Module encoder, by import path (see docs/custom-networks.md)",
    )
    m.add_argument(
        "--decoder-module",
        metavar="MODULE:CLASS",
        help="your own torch.nn.Module decoder, by import path",
    )
    m.add_argument(
        "--objective",
        choices=OBJECTIVES,
        help="elbo (default), iwae, or tcvae (β-TCVAE: --beta weighs only the total correlation)",
    )
    m.add_argument(
        "--k", dest="iw_samples", type=int, metavar="K", help="samples of the iwae objective"
    )
    t = p.add_argument_group("training")
    t.add_argument("--engine", choices=ENGINES, help="torch (default) or numpy")
    t.add_argument(
        "--binarize",
        choices=BINARIZATIONS,
        help="none (grey levels, default), threshold, static or dynamic",
    )
    t.add_argument("--epochs", type=int, help="number of epochs")
    t.add_argument("--batch-size", type=int, help="examples per step (default 128)")
    t.add_argument("--lr", type=float, help="learning rate (default 1e-3)")
    t.add_argument(
        "--lr-decay", type=float, metavar="GAMMA", help="multiply the rate by GAMMA every epoch"
    )
    t.add_argument("--optimizer", choices=OPTIMIZERS, help="adam (default) or sgd")
    t.add_argument("--momentum", type=float, help="SGD momentum (default 0)")
    t.add_argument(
        "--kl-warmup",
        type=float,
        metavar="EPOCHS",
        help="raise the KL weight linearly from 0 to β over EPOCHS (default 0)",
    )
    t.add_argument("--seed", type=_whole(0, MAX_SEED), help="random seed (default 0)")
    t.add_argument("--device", type=_device, help=DEVICE_HELP)
    t.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="fp32 (default) or bf16: bfloat16 autocast for --arch conv, on cpu or cuda",
    )
    t.add_argument(
        "--data-on-device",
        choices=DATA_ON_DEVICE,
        help="keep the training set on the torch engine's device, batches sliced and binarized "
        "there with no per-step sync: auto (default: on a lone CUDA GPU when it fits in half "
        "the free memory), yes or no",
    )
    t.add_argument(
        "--sample-every",
        type=int,
        metavar="N",
        help="write a sample grid every N epochs (default 1)",
    )
    t.add_argument(
        "--sample-every-steps", type=int, metavar="N", help="also write one every N steps"
    )
    t.add_argument("--sample-count", type=int, metavar="N", help="samples per grid (default 64)")
    t.add_argument("--lr-schedule", choices=LR_SCHEDULES, help="decay (default) or burda")
    t.add_argument("--adam-eps", type=float, metavar="EPS", help="Adam's ε (default 1e-8)")
    t.add_argument(
        "--data-dir",
        metavar="DIR",
        help="the directory DIR whose mnist/ or fashion-mnist/ holds the data set, only read "
        "(default $VAEKIT_DATA_DIR, else the user cache, the one place vaekit downloads to); "
        "the run stores it; with --resume, where the run's data set is now",
    )
    t.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    t.add_argument(
        "--force", action="store_true", help="replace the run in a non-empty --out directory"
    )
    t.add_argument(
        "--logger",
        choices=LOGGERS,
        help="none (default; metrics.jsonl is the record) or tensorboard: also TensorBoard event "
        "files in RUN/tensorboard (the tensorboard extra)",
    )
    d = p.add_argument_group("data")
    d.add_argument(
        "--scale",
        choices=SCALINGS,
        help="how raw values become inputs, fitted on the training part and stored in the run: "
        "auto (default: /255 for 8-bit data and images, else none), none, unit (/255), "
        "standardize or minmax (per feature)",
    )
    d.add_argument(
        "--image-size",
        type=_whole(1, MAX_IMAGE_SIDE),
        nargs=2,
        metavar=("H", "W"),
        help="resize every image to cover H×W, then crop its centre (default: images of one size)",
    )
    d.add_argument(
        "--image-mode",
        choices=IMAGE_MODES,
        help="read images as grey or rgb (default auto: rgb when any image has colour)",
    )
    d.add_argument(
        "--val-fraction",
        type=float,
        metavar="F",
        help=f"hold out this share (0 to {MAX_VAL_FRACTION}, seeded) of the training examples "
        "to score every epoch (default 0.1 for data without a test split, else 0)",
    )
    d.add_argument(
        "--keep",
        choices=KEEP,
        help="last (default): the last epoch's checkpoint; best: also the weights of the best "
        "held-out -ELBO (best.safetensors)",
    )
    d.add_argument(
        "--patience",
        type=_whole(0, MAX_EPOCHS),
        metavar="N",
        help="stop when the held-out -ELBO has not improved for N epochs (default 0: never)",
    )


def _add_trust_flag(p: argparse.ArgumentParser, what: str = "RUN") -> None:
    p.add_argument(
        "--trust-code",
        action="store_true",
        help=f"import the encoder_module or decoder_module that {what} names (importing a module "
        "runs its code: only for runs and files you trust; see docs/opening-runs.md)",
    )


def _add_run_flags(p: argparse.ArgumentParser, out: bool = True) -> None:
    p.add_argument("run", type=Path, metavar="RUN", help="a run directory written by train")
    _add_trust_flag(p)
    p.add_argument("--seed", type=_whole(0, MAX_SEED), default=0, help="random seed (default 0)")
    p.add_argument("--engine", choices=ENGINES, help="engine to run it with (default: its own)")
    p.add_argument("--device", type=_device, default="auto", help=DEVICE_HELP)
    _add_checkpoint_flag(p)
    if out:
        p.add_argument(
            "--out",
            type=_picture_file,
            help="picture to write, .png, .jpg or .jpeg (default: a new PNG in RUN named after "
            "the command's settings; train's own figures are never overwritten)",
        )


def _add_checkpoint_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--checkpoint",
        choices=layout.WHICH,
        default="last",
        help="the weights to use: last (default) or best (the best held-out -ELBO, --keep best)",
    )


def _add_data_flags(p: argparse.ArgumentParser) -> None:
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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="vaekit", description="Variational autoencoders you can read, train and trust."
    )
    parser.add_argument("--version", action="version", version=f"vaekit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "demo",
        help="train a small VAE on the bundled MNIST subset (< 1 minute)",
        description="Train the reference 784-400-20 VAE on mnist-small and write the checkpoint "
        f"and {', '.join(gallery.RUN_FIGURES)} into --out.",
    )
    p.add_argument("--out", type=Path, default=DEMO_DIR, help=f"run directory (default {DEMO_DIR})")
    p.add_argument("--epochs", type=int, default=DEMO_EPOCHS, help=f"default {DEMO_EPOCHS}")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    p.add_argument("--force", action="store_true", help="replace a non-demo run in --out")
    p.add_argument(
        "--logger", choices=LOGGERS, help="none (default) or tensorboard (see 'train --help')"
    )
    p.set_defaults(handler=cmd_demo)

    p = sub.add_parser("train", help="train a VAE", description="Train a VAE and save the run.")
    p.add_argument(
        "--data",
        metavar="NAME|PATH",
        help="mnist, fashion-mnist, mnist-small, or a .npy/.npz/.csv/image folder",
    )
    p.add_argument("--out", type=Path, help="run directory (default runs/<timestamp>)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out with its own settings (flags that agree with them may "
        "be repeated); --epochs N trains longer, --data-dir DIR reads its data set from where it "
        "is now (and the run remembers DIR), --device D continues on another device",
    )
    p.add_argument("--preset", metavar="NAME", help="start from a named recipe (vaekit presets)")
    p.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="settings from a TOML or JSON file (a run's config.json, 'vaekit presets --show "
        "NAME --format toml', or [model]/[train] tables); flags given as well override it",
    )
    _add_trust_flag(p, "the --config file or the --resume run")
    _add_training_flags(p)
    p.set_defaults(handler=cmd_train)

    p = sub.add_parser(
        "sample",
        help="draw samples from a trained run",
        description="Decode z ~ p(z), the run's prior (p(z|y) for --label), into a grid image "
        "(and optionally arrays).",
    )
    _add_run_flags(p)
    p.add_argument(
        "-n",
        type=_whole(1, MAX_IMAGES),
        help="number of samples (default 64; per class with --grid-by-label, default 10)",
    )
    p.add_argument(
        "--label",
        type=_whole(0, MAX_CLASSES - 1),
        help="the class to draw (conditional models)",
    )
    p.add_argument(
        "--grid-by-label", action="store_true", help="one row per class (conditional models)"
    )
    p.add_argument("--npy", type=_output_file, help="also save the samples as a .npy array")
    p.set_defaults(handler=cmd_sample)

    p = sub.add_parser(
        "presets",
        help="list the named recipes (--preset) and their settings",
        description="The presets that reproduce reference VAEs; --show NAME prints one's "
        "full model and training config.",
    )
    p.add_argument("--show", metavar="NAME", help="print a preset's full config")
    p.add_argument(
        "--format",
        choices=("json", "toml"),
        default="json",
        help="how --show prints it (default json); either is a valid 'train --config' file",
    )
    p.set_defaults(handler=cmd_presets)

    p = sub.add_parser(
        "export",
        help="export a run's encoder and decoder for deployment (ONNX)",
        description="Write RUN's encoder (x -> mu, logvar) and decoder (z -> mean of p(x|z)) as "
        "ONNX models, with vaekit-onnx.json naming their inputs, outputs and shapes and the "
        "run's scaling (the onnx extra).",
    )
    p.add_argument("run", type=Path, metavar="RUN", help="a run directory written by train")
    p.add_argument("--format", choices=("onnx",), default="onnx", help="onnx (the only one)")
    p.add_argument("--out", type=Path, required=True, help="folder to write (new or empty)")
    _add_checkpoint_flag(p)
    _add_trust_flag(p)
    p.set_defaults(handler=cmd_export)

    p = sub.add_parser(
        "reconstruct",
        help="reconstruct inputs with a trained run",
        description="Encode inputs (the run's held-out data, or --data), sample z ~ q(z|x), "
        "decode; draw both.",
    )
    _add_run_flags(p)
    _add_data_flags(p)
    p.add_argument("-n", type=_whole(1, MAX_GRID), default=8, help="number of inputs (default 8)")
    p.set_defaults(handler=cmd_reconstruct)

    p = sub.add_parser(
        "manifold",
        help="draw the decoded latent manifold",
        description="Decode an n×n grid of latents at Gaussian quantiles: both axes of a 2-d "
        "latent, two chosen dimensions (--dims), or the top-2 PCA plane of the posterior means "
        "of the run's held-out data (or --data).",
    )
    _add_run_flags(p)
    _add_data_flags(p)
    p.add_argument("-n", type=_whole(2, MAX_GRID), default=20, help="grid size (default 20)")
    p.add_argument(
        "--dims",
        type=_whole(0, MAX_UNITS - 1),
        nargs=2,
        metavar=("I", "J"),
        help="latent dimensions",
    )
    p.set_defaults(handler=cmd_manifold)

    p = sub.add_parser(
        "traverse",
        help="draw latent traversals, one row per dimension",
        description="Decode each latent dimension swept over its prior quantiles (--steps "
        "values of p from 0.05 to 0.95) from a base point: the prior's median, or the posterior "
        "mean of input --index of --data (or of the run's own --split). Rows are ordered by the "
        "mean KL(q(z_k|x) || p(z_k)) over the run's held-out data (or --data) where the prior "
        "has it in closed form, else by the variance of the posterior means.",
    )
    _add_run_flags(p)
    _add_data_flags(p)
    p.add_argument(
        "--dims",
        type=_whole(0, MAX_UNITS - 1),
        nargs="+",
        metavar="K",
        help="latent dimensions, one row each (default: the 10 most used)",
    )
    p.add_argument("--steps", type=_whole(2, MAX_GRID), default=9, help="columns (default 9)")
    p.add_argument(
        "--index",
        type=_whole(0, 10**9),
        help="start from this input of --data, or of the run's own --split (default 0 with --data; "
        "neither: the prior's median)",
    )
    p.add_argument("--label", type=_whole(0, MAX_UNITS), help="class to decode with (conditional)")
    p.add_argument("--npy", type=_output_file, help="also save the decoded array (rows, steps, …)")
    p.set_defaults(handler=cmd_traverse)

    p = sub.add_parser(
        "scatter",
        help="scatter the posterior means, coloured by label",
        description="Encode the run's held-out data (or --data) and plot E[z|x]: directly for a "
        "2-d latent, else PCA "
        "(or t-SNE with --method tsne and scikit-learn installed).",
    )
    _add_run_flags(p)
    _add_data_flags(p)
    p.add_argument("--method", choices=("auto", "pca", "tsne"), default="auto")
    p.add_argument(
        "--max-points", type=_whole(1, MAX_POINTS), default=10_000, help="default 10,000"
    )
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(handler=cmd_scatter)

    p = sub.add_parser(
        "interpolate",
        help="draw interpolations between inputs in latent space",
        description="Pick --pairs pairs of inputs of the run's held-out data or --data (with "
        "--seed), encode them and decode the path between their posterior means, linear or "
        "spherical (slerp).",
    )
    _add_run_flags(p)
    _add_data_flags(p)
    p.add_argument("--pairs", type=_whole(1, MAX_GRID), default=4, help="default 4")
    p.add_argument(
        "--steps", type=_whole(2, MAX_GRID), default=10, help="images per path (default 10)"
    )
    p.add_argument("--method", choices=("linear", "slerp"), default="linear")
    p.set_defaults(handler=cmd_interpolate)

    p = sub.add_parser(
        "curves",
        help="draw the training curves",
        description="Loss, test −ELBO, reconstruction and KL per epoch, from metrics.jsonl.",
    )
    p.add_argument("run", type=Path, metavar="RUN", help="a run directory written by train")
    p.add_argument(
        "--out",
        type=_picture_file,
        help="picture to write, .png, .jpg or .jpeg (default RUN/curves-epochN.png, N the "
        "last epoch)",
    )
    _add_trust_flag(p)
    p.set_defaults(handler=cmd_curves)

    p = sub.add_parser(
        "evaluate",
        help="ELBO, importance-weighted NLL and active units",
        description="Evaluate a run on its held-out data (or --data): the ELBO split into "
        "reconstruction and KL, "
        "the k-sample importance-weighted log-likelihood bound (--iw-samples) and the active "
        "latent units, in nats per example.",
    )
    _add_run_flags(p, out=False)
    _add_data_flags(p)
    p.add_argument(
        "--iw-samples",
        type=_whole(1, MAX_IW_SAMPLES),
        metavar="K",
        help="also estimate log p(x) with K importance samples (papers use 5000)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(handler=cmd_evaluate)

    p = sub.add_parser(
        "score",
        help="per-example log p(x) estimates as CSV",
        description="Estimate log p(x) of every example of each INPUT (a data set name, whose "
        "test split is used, a file, an image or a folder of images) with the "
        "importance-weighted bound, each INPUT whole, read and scaled as the run's data; write "
        "CSV rows (input, index, label, log_px), with --threshold-fpr also threshold and "
        "anomaly.",
    )
    _add_run_flags(p, out=False)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="data set names or paths")
    p.add_argument("--data-dir", help="where named data sets live")
    p.add_argument("--binarize", choices=BINARIZATIONS, help="default: the run's protocol")
    p.add_argument(
        "--iw-samples", type=_whole(1, MAX_IW_SAMPLES), default=100, metavar="K", help="default 100"
    )
    p.add_argument(
        "--threshold-fpr",
        type=_probability,
        metavar="P",
        help="flag inputs whose log p(x) is below the P quantile of the run's held-out data "
        "(0 < P < 1; adds columns threshold and anomaly)",
    )
    p.add_argument("--out", type=_output_file, help="CSV file to write (default: standard output)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(handler=cmd_score)

    p = sub.add_parser(
        "encode",
        help="export posterior means (and log-variances)",
        description="Encode the run's held-out data (or --data); write mu (.npy), mu, logvar and y "
        "(.npz), or a CSV "
        "with mu_*, logvar_* and label columns.",
    )
    _add_run_flags(p, out=False)
    _add_data_flags(p)
    p.add_argument("--out", type=_output_file, required=True, help="latents.npy, .npz or .csv")
    p.set_defaults(handler=cmd_encode)

    p = sub.add_parser(
        "quality",
        help="score samples against test images (Frechet distance, precision, recall)",
        description="Draw -n samples and compare them with the test split of the run's MNIST or "
        "Fashion-MNIST data in the features of a small classifier shipped with vaekit: Frechet "
        "distance, precision and recall (k=3), the classifier's confidence and entropy on the "
        "samples. Not comparable to published FID (Inception on natural images).",
    )
    _add_run_flags(p, out=False)
    p.add_argument("--data-dir", help="where named data sets live")
    p.add_argument(
        "-n", type=_whole(2, 100_000), default=10_000, help="samples to draw (default 10,000)"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_quality)

    p = sub.add_parser(
        "disentanglement",
        help="MIG and DCI of a run on shapes (data with known generative factors)",
        description="Draw -n images of the run's shapes grid with their factors (shape, scale, "
        "orientation, x, y), encode them (posterior means) and score the code: MIG with each "
        "factor's gap, DCI disentanglement, completeness and informativeness. Prints a table "
        "and writes disentanglement.json into RUN. Needs the sklearn extra.",
    )
    _add_run_flags(p, out=False)
    p.add_argument(
        "-n",
        type=_whole(10, shapes.FULL.n_images),
        help="images to draw (default 10,000, or the whole grid when it is smaller)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_disentanglement)

    p = sub.add_parser(
        "datasets",
        help="list the named data sets and where they are",
        description="Each named data set, whether it is present, and where.",
    )
    p.add_argument("--data-dir", help="where named data sets live")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_datasets)

    p = sub.add_parser(
        "serve",
        help="explore a run's latent space in the browser",
        description="Start a local web app: a latent map that decodes where you click, sliders, "
        "sampling, interpolation, and drawing a digit to see how the model reads it.",
    )
    p.add_argument("run", type=Path, metavar="RUN", help="a run directory written by train")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer requests for the host NAME (repeatable); a loopback --host answers "
        "only localhost, 127.0.0.1 and [::1] otherwise, so that no other site's page can read "
        "the explorer (DNS rebinding)",
    )
    p.add_argument(
        "--port", type=_whole(0, 65_535), default=8000, help="port (default 8000; 0: any free one)"
    )
    p.add_argument("--engine", choices=ENGINES, help="engine to run it with (default: its own)")
    p.add_argument("--device", type=_device, default="auto", help=DEVICE_HELP)
    _add_checkpoint_flag(p)
    _add_trust_flag(p)
    p.set_defaults(handler=cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (0 success, 2 user error, 130 interrupted)."""
    for stream in (sys.stdout, sys.stderr):  # a path that is not UTF-8 is printed, escaped
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    try:
        args = build_parser().parse_args(argv)
        _import_trusted_code(args)
        return args.handler(args)
    except VaekitError as exc:
        _fail(str(exc))
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        _fail(f"{exc.strerror or exc}{where}")
    except Interrupted as exc:
        print(f"vaekit: {exc.message()}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("vaekit: interrupted", file=sys.stderr)
        return 130
    return 2


def _import_trusted_code(args: argparse.Namespace) -> None:
    """With --trust-code, import the networks that the command's run names (RUN, or --out of
    --resume) now, with consent: every later read of the run in this command then finds their
    modules imported (a --config file is read with consent where it is read)."""
    if not getattr(args, "trust_code", False):
        return
    run = getattr(args, "run", None) or (args.out if getattr(args, "resume", False) else None)
    if run is not None:
        config_file.read_config(run, trust_code=True)


def _fail(message: str) -> None:
    print("vaekit: error: " + " ".join(message.split()), file=sys.stderr)
