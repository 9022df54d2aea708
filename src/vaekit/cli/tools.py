"""The commands around a run: datasets (where the named sets are), export (ONNX) and serve (the
explorer).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vaekit.cli.flags import (
    DEVICE_HELP,
    add_checkpoint_flag,
    add_trust_flag,
    device_name,
    whole_number,
)
from vaekit.config.limits import ENGINES
from vaekit.data import dataset_status
from vaekit.runs import loading


def cmd_export(args: argparse.Namespace) -> int:
    from vaekit.api.export import EXPORT_FILES, export_onnx  # torch's exporter: only when asked for

    which = loading.weights_of(args.run, args.checkpoint)
    out = export_onnx(args.run, args.out, which=which)
    print(f"wrote {', '.join(EXPORT_FILES)} ({which} weights) to {out}")
    return 0


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


def add_commands(sub: argparse._SubParsersAction) -> None:
    """The parsers of export, datasets, serve, each with its handler."""
    _add_export(sub)
    _add_datasets(sub)
    _add_serve(sub)


def _add_export(sub: argparse._SubParsersAction) -> None:
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
    add_checkpoint_flag(p)
    add_trust_flag(p)
    p.set_defaults(handler=cmd_export)


def _add_datasets(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "datasets",
        help="list the named data sets and where they are",
        description="Each named data set, whether it is present, and where.",
    )
    p.add_argument("--data-dir", help="where named data sets live")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_datasets)


def _add_serve(sub: argparse._SubParsersAction) -> None:
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
        "--port",
        type=whole_number(0, 65_535),
        default=8000,
        help="port (default 8000; 0: any free one)",
    )
    p.add_argument("--engine", choices=ENGINES, help="engine to run it with (default: its own)")
    p.add_argument("--device", type=device_name, default="auto", help=DEVICE_HELP)
    add_checkpoint_flag(p)
    add_trust_flag(p)
    p.set_defaults(handler=cmd_serve)
