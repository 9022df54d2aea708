"""The ``vaekit`` command line: parse, call the library, print, return an exit code.

Every error a user can cause ends in one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import numpy as np

from vaekit import __version__, checkpoint, figures
from vaekit.config import (
    ACTIVATIONS,
    BINARIZATIONS,
    DEVICES,
    ENGINES,
    LIKELIHOODS,
    OPTIMIZERS,
    SIGMA_MODES,
    ModelConfig,
    TrainConfig,
)
from vaekit.data import binarize, dataset_status, load_dataset
from vaekit.errors import ConfigError, VaekitError
from vaekit.sampling import reconstruct, sample_prior
from vaekit.training import TrainingData, fixed_binarization, resume_run, start_run

DEMO_DIR = Path("runs") / "demo"
DEMO_EPOCHS = 20


class UsageError(VaekitError):
    """A command line that argparse could not parse."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


# --- train and demo ----------------------------------------------------------------------------

#: Flags that describe a new run; with --resume the run's own config.json decides them.
NEW_RUN_FLAGS = (
    "data",
    "data_dir",
    "engine",
    "hidden",
    "decoder_hidden",
    "latent_dim",
    "activation",
    "likelihood",
    "sigma",
    "learn_sigma",
    "beta",
    "binarize",
    "batch_size",
    "lr",
    "optimizer",
    "momentum",
    "kl_warmup",
    "seed",
    "device",
    "sample_every",
    "force",
)


def _given(args: argparse.Namespace, names: Sequence[str]) -> dict:
    values = {name: getattr(args, name, None) for name in names}
    return {
        name: value for name, value in values.items() if value is not None and value is not False
    }


def _new_run_dir() -> Path:
    base = Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def _train_new(args: argparse.Namespace, created_by: str, force: bool, out: Path) -> int:
    train = TrainConfig(
        **_given(
            args,
            [
                "data",
                "data_dir",
                "engine",
                "device",
                "epochs",
                "batch_size",
                "lr",
                "optimizer",
                "momentum",
                "kl_warmup",
                "seed",
                "binarize",
                "sample_every",
            ],
        )
    )
    train_set = load_dataset(train.data, "train", train.data_dir)
    test_set = load_dataset(train.data, "test", train.data_dir)
    data = TrainingData.prepare(train, train_set, test_set)
    model = ModelConfig(
        input_shape=tuple(data.train.shape[1:]),
        **_given(
            args,
            [
                "hidden",
                "decoder_hidden",
                "latent_dim",
                "activation",
                "likelihood",
                "sigma",
                "learn_sigma",
                "beta",
            ],
        ),
    )
    print(
        f"training {model.parameter_count:,}-parameter VAE on {train.data} "
        f"({len(data.train):,} examples) with the {train.engine} engine into {out}"
    )
    history = start_run(
        model,
        train,
        out,
        data=data,
        force=force,
        created_by=created_by,
        progress=not args.quiet,
        log=_logger(args),
    )
    _print_summary(history[-1], out)
    return 0


def _logger(args: argparse.Namespace):
    return (lambda line: None) if args.quiet else print


def _print_summary(last: dict, out: Path) -> None:
    if "test_loss" in last:
        print(
            f"test -ELBO after {last['epoch']} epochs: {last['test_loss']:.2f} nats per example "
            f"(recon {last['test_recon']:.2f}, KL {last['test_kl']:.2f})"
        )
    else:
        print(f"training -ELBO after {last['epoch']} epochs: {last['loss']:.2f} nats per example")
    print(f"run saved in {out}")


def cmd_train(args: argparse.Namespace) -> int:
    if args.resume:
        if args.out is None:
            raise ConfigError("--resume needs --out RUN, the run directory to continue")
        extra = sorted(_given(args, NEW_RUN_FLAGS))
        if extra:
            flags = ", ".join("--" + name.replace("_", "-") for name in extra)
            raise ConfigError(f"--resume continues the run with its own settings; drop {flags}")
        history = resume_run(
            args.out, epochs=args.epochs, progress=not args.quiet, log=_logger(args)
        )
        _print_summary(history[-1], args.out)
        return 0
    if args.data is None:
        raise ConfigError("train needs --data NAME|PATH (see 'vaekit datasets')")
    return _train_new(args, "train", args.force, args.out or _new_run_dir())


def cmd_demo(args: argparse.Namespace) -> int:
    out = args.out
    force = args.force
    if (out / checkpoint.CONFIG_FILE).exists() and not force:
        force = checkpoint.read_config(out)[2].get("created_by") == "demo"  # replace an old demo
    args.data = "mnist-small"
    _train_new(args, "demo", force, out)
    print(f"pictures: {out / 'samples.png'}, {out / 'reconstructions.png'}")
    return 0


# --- using a run -------------------------------------------------------------------------------


def cmd_sample(args: argparse.Namespace) -> int:
    if args.n < 1:
        raise ConfigError("-n must be at least 1")
    engine = checkpoint.open_run(args.run, args.engine, args.device)
    images = sample_prior(engine, args.n, seed=args.seed)
    out = args.out or args.run / f"samples-n{args.n}-seed{args.seed}.png"
    if figures.can_draw(engine.config.input_shape):
        figures.save_sample_grid(images, out, f"{args.n} samples from the prior (seed {args.seed})")
        print(f"wrote {out}")
    if args.npy:
        _save_npy(args.npy, images)
        print(f"wrote {args.npy}")
    return 0


def _save_npy(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array.astype(np.float32), allow_pickle=False)
    checkpoint.write_atomic(Path(path), buffer.getvalue())


def cmd_reconstruct(args: argparse.Namespace) -> int:
    if args.n < 1:
        raise ConfigError("-n must be at least 1")
    engine = checkpoint.open_run(args.run, args.engine, args.device)
    _, train, _ = checkpoint.read_config(args.run)
    data = load_dataset(args.data, args.split, args.data_dir)
    if data is None:
        raise ConfigError(f"{args.data} has no {args.split} split; use --split train")
    if tuple(data.x.shape[1:]) != engine.config.input_shape:
        raise ConfigError(
            f"{args.data} has examples of shape {data.x.shape[1:]}, the model "
            f"expects {engine.config.input_shape}"
        )
    x = binarize(data.x[: args.n], fixed_binarization(train.binarize))
    out = args.out or args.run / f"reconstructions-n{args.n}-seed{args.seed}.png"
    figures.save_reconstructions(
        x,
        reconstruct(engine, x, seed=args.seed),
        out,
        "Inputs (top) and their reconstructions (bottom)",
    )
    print(f"wrote {out}")
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
    m.add_argument("--beta", type=float, help="KL weight β (default 1, the true ELBO)")
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
    t.add_argument("--optimizer", choices=OPTIMIZERS, help="adam (default) or sgd")
    t.add_argument("--momentum", type=float, help="SGD momentum (default 0)")
    t.add_argument(
        "--kl-warmup",
        type=float,
        metavar="EPOCHS",
        help="raise the KL weight linearly from 0 to β over EPOCHS (default 0)",
    )
    t.add_argument("--seed", type=int, help="random seed (default 0)")
    t.add_argument("--device", choices=DEVICES, help="auto (default), cpu or cuda")
    t.add_argument(
        "--sample-every",
        type=int,
        metavar="N",
        help="write a sample grid every N epochs (default 1)",
    )
    t.add_argument(
        "--data-dir",
        help="where named data sets live (default $VAEKIT_DATA_DIR, else the user cache)",
    )
    t.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    t.add_argument(
        "--force", action="store_true", help="replace the run in a non-empty --out directory"
    )


def _add_run_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", type=Path, metavar="RUN", help="a run directory written by train")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--engine", choices=ENGINES, help="engine to run it with (default: its own)")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--out", type=Path, help="PNG file to write (default: inside RUN)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="vaekit", description="Variational autoencoders you can read, train and trust."
    )
    parser.add_argument("--version", action="version", version=f"vaekit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "demo",
        help="train a small VAE on the bundled MNIST subset (< 1 minute)",
        description="Train the reference 784-400-20 VAE on mnist-small and write "
        "samples.png, reconstructions.png and the checkpoint.",
    )
    p.add_argument("--out", type=Path, default=DEMO_DIR, help=f"run directory (default {DEMO_DIR})")
    p.add_argument("--epochs", type=int, default=DEMO_EPOCHS, help=f"default {DEMO_EPOCHS}")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    p.add_argument("--force", action="store_true", help="replace a non-demo run in --out")
    p.set_defaults(handler=cmd_demo)

    p = sub.add_parser("train", help="train a VAE", description="Train a VAE and save the run.")
    p.add_argument(
        "--data",
        metavar="NAME|PATH",
        help="mnist, fashion-mnist, mnist-small, or a .npy/.npz/.csv/image folder",
    )
    p.add_argument("--out", type=Path, help="run directory (default runs/<timestamp>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    _add_training_flags(p)
    p.set_defaults(handler=cmd_train)

    p = sub.add_parser(
        "sample",
        help="draw samples from a trained run",
        description="Decode z ~ N(0, I) into a grid image (and optionally arrays).",
    )
    _add_run_flags(p)
    p.add_argument("-n", type=int, default=64, help="number of samples (default 64)")
    p.add_argument("--npy", type=Path, help="also save the samples as a .npy array")
    p.set_defaults(handler=cmd_sample)

    p = sub.add_parser(
        "reconstruct",
        help="reconstruct inputs with a trained run",
        description="Encode inputs, sample z ~ q(z|x), decode; draw both.",
    )
    _add_run_flags(p)
    p.add_argument("--data", required=True, metavar="NAME|PATH", help="data set name or file")
    p.add_argument("--data-dir", help="where named data sets live")
    p.add_argument("--split", choices=("train", "test"), default="test")
    p.add_argument("-n", type=int, default=8, help="number of inputs (default 8)")
    p.set_defaults(handler=cmd_reconstruct)

    p = sub.add_parser(
        "datasets",
        help="list the named data sets and where they are",
        description="Each named data set, whether it is present, and where.",
    )
    p.add_argument("--data-dir", help="where named data sets live")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_datasets)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (0 success, 2 user error, 130 interrupted)."""
    try:
        args = build_parser().parse_args(argv)
        return args.handler(args)
    except VaekitError as exc:
        _fail(str(exc))
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        _fail(f"{exc.strerror or exc}{where}")
    except KeyboardInterrupt:
        print("vaekit: interrupted", file=sys.stderr)
        return 130
    return 2


def _fail(message: str) -> None:
    print("vaekit: error: " + " ".join(message.split()), file=sys.stderr)
