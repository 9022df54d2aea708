"""The commands that draw from a run: sample, reconstruct, manifold, traverse, scatter,
interpolate, curves. Each writes where --out says, or a new file in the run named after its
settings, never over one of the run's own.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

from vaekit.cli.common import (
    check_drawable,
    check_unconditional,
    command_data,
    label_code,
    label_texts,
    labels_for,
    reporting,
    save_decoded_npy,
)
from vaekit.cli.flags import (
    MAX_GRID,
    MAX_IMAGES,
    MAX_POINTS,
    add_data_flags,
    add_run_flags,
    add_trust_flag,
    output_file,
    picture_file,
    whole_number,
)
from vaekit.config.limits import MAX_UNITS
from vaekit.data import Dataset
from vaekit.data import classes as class_names
from vaekit.draw import figures, gallery, geometry
from vaekit.engines.sampling import posterior_means, sample_prior
from vaekit.errors import ConfigError
from vaekit.runs import config_file, loading
from vaekit.runs.metrics import CURVE_KEYS, read_metrics
from vaekit.text import plural

RECONSTRUCT_N = 8  # inputs reconstruct draws without -n or --index


def cmd_sample(args: argparse.Namespace) -> int:
    n = args.n if args.n is not None else (10 if args.grid_by_label else 64)
    engine = loading.open_run(args.run, args.engine, args.device, args.checkpoint)
    classes = engine.config.n_classes
    if args.grid_by_label and not classes:
        raise ConfigError(f"{args.run} is not a conditional model; --grid-by-label needs one")
    label = label_code(args.run, engine, args.label)
    if args.grid_by_label and n * classes > MAX_IMAGES:
        raise ConfigError(
            f"-n {n} with --grid-by-label draws {n * classes:,} images ({classes} classes); "
            f"the most is {MAX_IMAGES:,}, so -n must be from 1 to {MAX_IMAGES // classes:,}"
        )
    if args.grid_by_label:
        out = args.out or args.run / f"samples-by-label-n{n}-seed{args.seed}.png"
        names = class_names.load(args.run)
        gallery.draw_label_grid(engine, out, per_class=n, seed=args.seed, names=names)
        print(f"wrote {out} ({plural(classes, 'row')}, one per class, {plural(n, 'sample')} each)")
        return 0
    which = f"-label{label}" if label is not None else ""  # the code: names may hold a "/"
    out = args.out or args.run / f"samples{which}-n{n}-seed{args.seed}.png"
    images = sample_prior(engine, n, seed=args.seed, labels=label)
    if figures.can_draw(engine.config.input_shape):
        title = f"{plural(n, 'sample')} from the prior (seed {args.seed})"
        if label is not None:
            name = class_names.names_or_numbers(class_names.load(args.run), classes)[label]
            title = f"{plural(n, 'sample')} of class {name} (seed {args.seed})"
        figures.save_sample_grid(images, out, title)
        print(f"wrote {out}")
    if args.npy:
        save_decoded_npy(args.run, args.npy, images)
    return 0


def cmd_reconstruct(args: argparse.Namespace) -> int:
    if args.index is not None and args.n is not None:
        raise ConfigError("give -n or --index, not both: --index names the rows to draw")
    if args.index is not None and len(args.index) > MAX_GRID:
        raise ConfigError(f"--index takes at most {MAX_GRID} rows, got {len(args.index):,}")
    engine = loading.open_run(args.run, args.engine, args.device, args.checkpoint)
    data = command_data(args, args.data, args.split)[0]
    y = labels_for(engine, data)
    rows = _rows_to_reconstruct(args, data)
    out = args.out or args.run / _reconstructions_name(args)
    labels = None if y is None else y[rows]
    gallery.draw_reconstructions(engine, data.x[rows], out, args.seed, labels)
    print(f"drew rows {_rows_shown(rows, data)}")
    print(f"wrote {out}")
    return 0


def _rows_to_reconstruct(args: argparse.Namespace, data: Dataset) -> np.ndarray:
    """The rows of ``data`` that ``reconstruct`` draws: --index, each checked, else -n rows
    spread over the classes by --seed (:func:`gallery.spread_rows`)."""
    count = len(data.x)
    if args.index is None:
        return gallery.spread_rows(args.n or RECONSTRUCT_N, data.y, count, args.seed)
    for index in args.index:
        if index >= count:
            raise ConfigError(
                f"--index {index} is past the {plural(count, 'input')} of {data.name} (rows "
                f"0 to {count - 1})"
            )
    return np.array(args.index, dtype=np.int64)


def _rows_shown(rows: np.ndarray, data: Dataset) -> str:
    """The rows drawn, each with its class's name when the data read for the run name their
    classes (the run's names: :func:`vaekit.runs.inputs.run_labels`)."""
    if data.y is None or not data.classes:
        return ", ".join(map(str, rows))
    texts = label_texts(data)
    return ", ".join(f"{row} ({texts[row]})" for row in rows)


def _reconstructions_name(args: argparse.Namespace) -> str:
    """The default file of ``reconstruct``, named after its settings: -n, or the --index rows
    (a digest of them when they are many), and --seed."""
    if args.index is None:
        return f"reconstructions-n{args.n or RECONSTRUCT_N}-seed{args.seed}.png"
    rows = "-".join(map(str, args.index))
    if len(args.index) > 8:
        rows = f"{len(args.index)}rows-" + hashlib.sha256(rows.encode()).hexdigest()[:10]
    return f"reconstructions-index{rows}-seed{args.seed}.png"


def cmd_manifold(args: argparse.Namespace) -> int:
    engine = loading.open_run(args.run, args.engine, args.device, args.checkpoint)
    check_drawable(engine)
    check_unconditional(engine, "the latent manifold")
    pca_plane = engine.config.latent_dim > 2 and args.dims is None
    x = command_data(args, args.data, args.split)[0].x if pca_plane else None
    dims = "" if args.dims is None else f"-dims{args.dims[0]}-{args.dims[1]}"
    out = args.out or args.run / f"manifold-n{args.n}{dims}.png"
    gallery.draw_manifold(engine, out, x, n=args.n, dims=args.dims)
    print(f"wrote {out}")
    return 0


def cmd_traverse(args: argparse.Namespace) -> int:
    engine = loading.open_run(args.run, args.engine, args.device, args.checkpoint)
    label = label_code(args.run, engine, args.label)
    k = engine.config.latent_dim
    if args.dims is not None and any(d >= k for d in args.dims):
        raise ConfigError(f"--dims must be latent indices in 0..{k - 1}; got {args.dims}")
    data = command_data(args, args.data, args.split)[0]
    y = labels_for(engine, data)
    base = None
    if args.data is not None or args.index is not None:
        index = args.index or 0
        if index >= len(data.x):
            raise ConfigError(f"--index {index} is past the {plural(len(data.x), 'input')}")
        i = slice(index, index + 1)
        base = engine.encode(data.x[i], None if y is None else y[i])[0][0]
    out = args.out or args.run / _traversals_name(args, label)
    images = gallery.draw_traversals(
        engine,
        out,
        data.x,
        y,
        dims=args.dims,
        steps=args.steps,
        base=base,
        label=label,
        names=class_names.load(args.run),
    )
    if figures.can_draw(engine.config.input_shape):
        print(f"wrote {out}")
    if args.npy:
        save_decoded_npy(args.run, args.npy, images)
    return 0


def _traversals_name(args: argparse.Namespace, label: int | None) -> str:
    """The default file of ``traverse``: its settings in the name (the class by its code),
    never train's traversals.png."""
    parts = ["traversals"]
    if args.dims is not None:
        parts.append("dims" + "-".join(map(str, args.dims)))
    if args.index is not None:
        parts.append(f"index{args.index}")
    if label is not None:
        parts.append(f"label{label}")
    return "-".join([*parts, f"steps{args.steps}"]) + ".png"


def cmd_scatter(args: argparse.Namespace) -> int:
    geometry.check_projection(args.method)  # t-SNE without scikit-learn: before any work
    engine = loading.open_run(args.run, args.engine, args.device, args.checkpoint)
    data = command_data(args, args.data, args.split)[0]
    y = labels_for(engine, data)
    with reporting(args, "encoding", min(len(data.x), args.max_points)) as progress:
        latents = posterior_means(engine, data.x, y, limit=args.max_points, progress=progress)
    labels = None if data.y is None else data.y[: len(latents)]
    out = args.out or args.run / f"scatter-{args.method}-n{len(latents)}.png"
    figures.save_latent_scatter(latents, labels, out, method=args.method, names=data.classes)
    print(f"wrote {out}")
    return 0


def cmd_interpolate(args: argparse.Namespace) -> int:
    engine = loading.open_run(args.run, args.engine, args.device, args.checkpoint)
    check_drawable(engine)
    check_unconditional(engine, "an interpolation")
    x = command_data(args, args.data, args.split)[0].x
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


def add_commands(sub: argparse._SubParsersAction) -> None:
    """The parsers of sample, reconstruct, manifold, traverse, scatter, interpolate, curves, each
    with its handler."""
    _add_sample(sub)
    _add_reconstruct(sub)
    _add_manifold(sub)
    _add_traverse(sub)
    _add_scatter(sub)
    _add_interpolate(sub)
    _add_curves(sub)


def _add_sample(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sample",
        help="draw samples from a trained run",
        description="Decode z ~ p(z), the run's prior (p(z|y) for --label), into a grid image "
        "(and optionally arrays).",
    )
    add_run_flags(p)
    p.add_argument(
        "-n",
        type=whole_number(1, MAX_IMAGES),
        help="number of samples (default 64; per class with --grid-by-label, default 10)",
    )
    p.add_argument(
        "--label",
        metavar="NAME|N",
        help="the class to draw, by its name or number (conditional models)",
    )
    p.add_argument(
        "--grid-by-label", action="store_true", help="one row per class (conditional models)"
    )
    p.add_argument("--npy", type=output_file, help="also save the samples as a .npy array")
    p.set_defaults(handler=cmd_sample)


def _add_reconstruct(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reconstruct",
        help="reconstruct inputs with a trained run",
        description="Encode inputs (a seeded spread of the run's held-out data, or of --data, "
        "or the rows --index names), sample z ~ q(z|x) (with --seed), decode; draw both, and "
        "print which rows were drawn.",
    )
    add_run_flags(p)
    add_data_flags(p)
    p.add_argument(
        "-n",
        type=whole_number(1, MAX_GRID),
        help=f"number of inputs (default {RECONSTRUCT_N}), spread over the classes by --seed: one "
        "of each class in turn, each class's rows drawn at random (without labels: a random "
        "sample)",
    )
    p.add_argument(
        "--index",
        type=whole_number(0, 10**9),
        nargs="+",
        metavar="I",
        help=f"draw these rows of the data read (0 is the first; at most {MAX_GRID}) instead of "
        "-n spread ones",
    )
    p.set_defaults(handler=cmd_reconstruct)


def _add_manifold(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "manifold",
        help="draw the decoded latent manifold",
        description="Decode an n×n grid of latents at Gaussian quantiles: both axes of a 2-d "
        "latent, two chosen dimensions (--dims), or the top-2 PCA plane of the posterior means "
        "of the run's held-out data (or --data).",
    )
    add_run_flags(p)
    add_data_flags(p)
    p.add_argument("-n", type=whole_number(2, MAX_GRID), default=20, help="grid size (default 20)")
    p.add_argument(
        "--dims",
        type=whole_number(0, MAX_UNITS - 1),
        nargs=2,
        metavar=("I", "J"),
        help="latent dimensions",
    )
    p.set_defaults(handler=cmd_manifold)


def _add_traverse(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "traverse",
        help="draw latent traversals, one row per dimension",
        description="Decode each latent dimension swept over its prior quantiles (--steps "
        "values of p from 0.05 to 0.95) from a base point: the prior's median, or the posterior "
        "mean of input --index of --data (or of the run's own --split). Rows are ordered by the "
        "mean KL(q(z_k|x) || p(z_k)) over the run's held-out data (or --data) where the prior "
        "has it in closed form, else by the variance of the posterior means.",
    )
    add_run_flags(p)
    add_data_flags(p)
    p.add_argument(
        "--dims",
        type=whole_number(0, MAX_UNITS - 1),
        nargs="+",
        metavar="K",
        help="latent dimensions, one row each (default: the 10 most used)",
    )
    p.add_argument("--steps", type=whole_number(2, MAX_GRID), default=9, help="columns (default 9)")
    p.add_argument(
        "--index",
        type=whole_number(0, 10**9),
        help="start from this input of --data, or of the run's own --split (default 0 with --data; "
        "neither: the prior's median)",
    )
    p.add_argument(
        "--label",
        metavar="NAME|N",
        help="the class to decode with, by its name or number (conditional models)",
    )
    p.add_argument("--npy", type=output_file, help="also save the decoded array (rows, steps, …)")
    p.set_defaults(handler=cmd_traverse)


def _add_scatter(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "scatter",
        help="scatter the posterior means, coloured by label",
        description="Encode the run's held-out data (or --data) and plot E[z|x]: directly for a "
        "2-d latent, else PCA "
        "(or t-SNE with --method tsne and scikit-learn installed).",
    )
    add_run_flags(p)
    add_data_flags(p)
    p.add_argument("--method", choices=("auto", "pca", "tsne"), default="auto")
    p.add_argument(
        "--max-points", type=whole_number(1, MAX_POINTS), default=10_000, help="default 10,000"
    )
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(handler=cmd_scatter)


def _add_interpolate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "interpolate",
        help="draw interpolations between inputs in latent space",
        description="Pick --pairs pairs of inputs of the run's held-out data or --data (with "
        "--seed), encode them and decode the path between their posterior means, linear or "
        "spherical (slerp).",
    )
    add_run_flags(p)
    add_data_flags(p)
    p.add_argument("--pairs", type=whole_number(1, MAX_GRID), default=4, help="default 4")
    p.add_argument(
        "--steps", type=whole_number(2, MAX_GRID), default=10, help="images per path (default 10)"
    )
    p.add_argument("--method", choices=("linear", "slerp"), default="linear")
    p.set_defaults(handler=cmd_interpolate)


def _add_curves(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "curves",
        help="draw the training curves",
        description="Loss, test −ELBO, reconstruction and KL per epoch, from metrics.jsonl.",
    )
    p.add_argument("run", type=Path, metavar="RUN", help="a run directory written by train")
    p.add_argument(
        "--out",
        type=picture_file,
        help="picture to write, .png, .jpg or .jpeg (default RUN/curves-epochN.png, N the "
        "last epoch)",
    )
    add_trust_flag(p)
    p.set_defaults(handler=cmd_curves)
