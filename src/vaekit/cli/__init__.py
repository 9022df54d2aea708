"""The ``vaekit`` command line: parse, call the library, print, return an exit code.

Every error a user can cause ends in one line on stderr and exit code 2. The commands live in
one module per group, each beside its parser: training (demo, train, presets), pictures
(sample, reconstruct, manifold, traverse, scatter, interpolate, curves), scores (evaluate,
score, encode, quality, disentanglement) and tools (export, datasets, serve); the flags of the
settings are made from the settings' own fields (:mod:`vaekit.cli.flags`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib.metadata import version

from vaekit.cli import pictures, scores, tools, training
from vaekit.cli.common import Interrupted
from vaekit.cli.flags import Parser
from vaekit.errors import VaekitError
from vaekit.runs import config_file


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="vaekit", description="Variational autoencoders you can read, train and trust."
    )
    parser.add_argument("--version", action="version", version=f"vaekit {version('vaekit')}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for commands in (training, pictures, scores, tools):
        commands.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (0 success, 2 user error, 130 interrupted)."""
    for stream in (sys.stdout, sys.stderr):  # a path that is not UTF-8 is printed, escaped
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    # Threads that wait for each other sleep instead of spinning (read once, when torch loads
    # OpenMP): no result changes, and a command beside other work no longer crawls while its
    # idle threads burn the cores the work needs (docs/performance.md).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
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
