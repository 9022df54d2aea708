"""vaekit demo, train and presets: the settings of a command line (a preset, a settings file and
flags, in that order), a new run or a resumed one, and its summary.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import time
from collections.abc import Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import NamedTuple

from vaekit.cli.common import log_of, stopping_cleanly
from vaekit.cli.flags import add_settings_flags, add_trust_flag
from vaekit.config.files import FROM_THE_DATA, read_settings, to_toml
from vaekit.config.limits import LOGGERS
from vaekit.config.presets import PRESETS, Preset, get_preset
from vaekit.config.settings import ModelConfig, TrainConfig, default_prior
from vaekit.data import load_raw
from vaekit.data.datasets import absolute_source
from vaekit.data.pipeline import TrainingData, model_config
from vaekit.draw import gallery
from vaekit.engines.torch import distributed
from vaekit.errors import ConfigError
from vaekit.model import parameters
from vaekit.model.custom_networks import check_consent
from vaekit.runs import best_weights, checkpoint, config_file, layout
from vaekit.runs.layout import read_json
from vaekit.text import plural
from vaekit.train.loop import LoopState, stop_sentence
from vaekit.train.start import resume_run, start_run

DEMO_DIR = Path("runs") / "demo"


DEMO_EPOCHS = 20


#: Settings a command line can give, by config (input_shape and n_classes come from the data).
MODEL_FIELDS = tuple(
    f.name for f in fields(ModelConfig) if f.name not in ("input_shape", "n_classes")
)


TRAIN_FIELDS = tuple(f.name for f in fields(TrainConfig))


#: Settings --resume lets differ from the run's: train longer (a larger --epochs, --patience or
#: --max-minutes), read the data from where it is now, continue on another device (a run trained
#: on a GPU resumes on a CPU, and back).
RESUME_MAY_CHANGE = ("epochs", "data_dir", "device", "patience", "max_minutes")


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
    file = read_settings(args.config) if getattr(args, "config", None) else None
    if file is not None:  # the networks it names, imported with --trust-code, else refused
        trusted = getattr(args, "trust_code", False)
        check_consent(file.model, str(args.config), trusted)
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
    model = model_config(settings.model, train, data, settings.conditional)
    n_classes = model.n_classes
    kind = f"conditional ({plural(n_classes, 'class', 'classes')}) " if n_classes else ""
    group = distributed.from_environment()
    processes = f" on {group.world_size} processes" if group else ""
    held = data.held_out()
    holding = "" if held is None else f", {len(held[0]):,} held out ({held[2]})"
    announcement = (
        f"training {parameters.count(model):,}-parameter {kind}{model.arch} VAE on {train.data} "
        f"({plural(len(data.train), 'example')}{holding}, scale {data.scaling.method}) with the "
        f"{train.engine} engine{processes} into {out}{_until(train)}"
    )
    with stopping_cleanly(out):
        history = start_run(
            model,
            train,
            out,
            data=data,
            force=force,
            created_by=created_by,
            progress=not args.quiet,
            log=log_of(args),
            on_start=lambda: print(announcement, flush=True),
        )
    _print_summary(history[-1], out)
    return 0


def _until(train: TrainConfig) -> str:
    """How long an ``epochs`` auto run trains, for the announcement; "" for a number."""
    if not train.auto:
        return ""
    return (
        f", until the held-out -ELBO has not improved for {plural(train.patience, 'epoch')} "
        f"(at most {plural(train.epoch_limit, 'epoch')} and {train.max_minutes:g} minutes)"
    )


def _stop_line(last: dict, out: Path) -> str | None:
    """Why the run stopped after its ``last`` epoch's record (:func:`stop_sentence`), or None
    where it trained the epochs it was given."""
    reason = last.get("stopped")
    if reason is None:
        return None
    _, train, _ = config_file.read_config(out)
    state = LoopState.from_json(read_json(out / layout.STATE_FILE))
    return stop_sentence(train, reason, state)


def _print_summary(last: dict, out: Path) -> None:
    group = distributed.from_environment()
    if group is not None and not group.is_main:
        return  # rank 0 speaks for the group, and reads the run's files once it has written them
    stop = _stop_line(last, out)
    if stop is not None:
        print(stop)
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
            f"(kept in {out / layout.BEST_WEIGHTS_FILE}; every command uses these weights "
            "unless given --checkpoint last)"
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
        with stopping_cleanly(args.out):
            history = resume_run(
                args.out,
                epochs=args.epochs,
                patience=args.patience,
                max_minutes=args.max_minutes,
                data_dir=_settings(args).train.get("data_dir"),
                device=args.device,
                progress=not args.quiet,
                log=log_of(args),
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


def add_commands(sub: argparse._SubParsersAction) -> None:
    """The parsers of demo, train, presets, each with its handler."""
    _add_demo(sub)
    _add_train(sub)
    _add_presets(sub)


def _add_demo(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument(
        "--threads", type=int, metavar="N", help="CPU threads (default 1; see 'train --help')"
    )
    p.set_defaults(handler=cmd_demo)


def _add_train(sub: argparse._SubParsersAction) -> None:
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
    add_trust_flag(p, "the --config file or the --resume run")
    add_settings_flags(p)
    p.set_defaults(handler=cmd_train)


def _add_presets(sub: argparse._SubParsersAction) -> None:
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
