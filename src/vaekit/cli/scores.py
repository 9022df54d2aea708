"""The commands that measure a run: evaluate (ELBO, IWAE bound, active units), score
(per-input log p(x) as CSV, anomaly flags), encode (posterior means), quality and
disentanglement.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
import time

import numpy as np

from vaekit import disk
from vaekit.cli.common import command_data, label_texts, labels_for, reporting
from vaekit.cli.flags import add_data_flags, add_run_flags, output_file, probability, whole_number
from vaekit.config.limits import BINARIZATIONS, MAX_IW_SAMPLES, MAX_THREADS
from vaekit.data import shapes
from vaekit.errors import ConfigError
from vaekit.measure.evaluation import (
    evaluate_elbo,
    iwae_log_likelihood,
    latent_statistics,
    outlier_threshold,
)
from vaekit.runs import config_file, loading
from vaekit.runs.inputs import held_out, part_read
from vaekit.text import plural


def cmd_evaluate(args: argparse.Namespace) -> int:
    engine = loading.open_run(args.run, args.engine, args.device, args.checkpoint)
    data, mode = command_data(args, args.data, args.split)
    started = time.perf_counter()
    y = labels_for(engine, data)
    with reporting(args, "ELBO", len(data.x)) as progress:
        elbo = evaluate_elbo(engine, data.x, y=y, seed=args.seed, progress=progress)
    with reporting(args, "active units", len(data.x)) as progress:
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
        with reporting(args, f"IWAE bound, k={args.iw_samples}", len(data.x)) as progress:
            log_px = _log_px(args, engine, data.x, y, progress)
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
    inputs = [(source, command_data(args, source, "all")[0]) for source in args.inputs]
    labels_of = [labels_for(engine, data) for _, data in inputs]  # all checked before any work
    threshold = None
    if args.threshold_fpr is not None:
        reference, name = held_out(args.run, data_dir=args.data_dir, binarize_mode=args.binarize)
        reference_labels = labels_for(engine, reference)
        with reporting(args, f"scoring the {name} data", len(reference.x)) as progress:
            scores = _log_px(args, engine, reference.x, reference_labels, progress)
        threshold = outlier_threshold(scores, args.threshold_fpr)
    header = ["input", "index", "label", "log_px"]
    rows: list[list] = []
    summary = []
    for (source, data), y in zip(inputs, labels_of, strict=True):
        with reporting(args, f"scoring {source}, k={args.iw_samples}", len(data.x)) as progress:
            log_px = _log_px(args, engine, data.x, y, progress)
        labels = label_texts(data)
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
    return iwae_log_likelihood(
        engine, x, args.iw_samples, y=y, seed=args.seed, threads=args.threads, progress=progress
    )


def _threshold_line(args: argparse.Namespace, threshold: float, name: str, n: int) -> str:
    return (
        f"anomaly threshold {threshold:.2f} nats: at most a share {args.threshold_fpr:g} of the "
        f"log p(x) of {plural(n, name + ' example')} lies below it; inputs below it are flagged "
        "(anomaly 1)"
    )


def cmd_encode(args: argparse.Namespace) -> int:
    suffix = args.out.suffix.lower()
    if suffix not in (".npy", ".npz", ".csv"):
        raise ConfigError("--out must end in .npy (means), .npz (mu, logvar, y) or .csv")
    engine = loading.open_run(args.run, args.engine, args.device, args.checkpoint)
    data, _ = command_data(args, args.data, args.split)
    mu, logvar = engine.encode(data.x, labels_for(engine, data))
    buffer = io.BytesIO()
    if suffix == ".npy":
        np.save(buffer, mu, allow_pickle=False)
    elif suffix == ".npz":
        arrays = {"mu": mu, "logvar": logvar}
        if data.y is not None:
            arrays["y"] = data.y
        if data.y is not None and data.classes:
            arrays["classes"] = np.array(data.classes, dtype=str)
        np.savez(buffer, **arrays)
    else:
        k = mu.shape[1]
        header = [f"mu_{i}" for i in range(k)] + [f"logvar_{i}" for i in range(k)] + ["label"]
        labels = label_texts(data)
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


def add_commands(sub: argparse._SubParsersAction) -> None:
    """The parsers of evaluate, score, encode, quality, disentanglement, each with its handler."""
    _add_evaluate(sub)
    _add_score(sub)
    _add_encode(sub)
    _add_quality(sub)
    _add_disentanglement(sub)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="ELBO, importance-weighted NLL and active units",
        description="Evaluate a run on its held-out data (or --data): the ELBO split into "
        "reconstruction and KL, "
        "the k-sample importance-weighted log-likelihood bound (--iw-samples) and the active "
        "latent units, in nats per example.",
    )
    add_run_flags(p, out=False)
    add_data_flags(p)
    p.add_argument(
        "--iw-samples",
        type=whole_number(1, MAX_IW_SAMPLES),
        metavar="K",
        help="also estimate log p(x) with K importance samples (papers use 5000)",
    )
    _add_threads_flag(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(handler=cmd_evaluate)


def _add_score(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score",
        help="per-example log p(x) estimates as CSV",
        description="Estimate log p(x) of every example of each INPUT (a data set name, whose "
        "test split is used, a file, an image or a folder of images) with the "
        "importance-weighted bound, each INPUT whole, read and scaled as the run's data; write "
        "CSV rows (input, index, label, log_px), with --threshold-fpr also threshold and "
        "anomaly.",
    )
    add_run_flags(p, out=False)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="data set names or paths")
    p.add_argument("--data-dir", help="where named data sets live")
    p.add_argument("--binarize", choices=BINARIZATIONS, help="default: the run's protocol")
    p.add_argument(
        "--iw-samples",
        type=whole_number(1, MAX_IW_SAMPLES),
        default=100,
        metavar="K",
        help="default 100",
    )
    _add_threads_flag(p)
    p.add_argument(
        "--threshold-fpr",
        type=probability,
        metavar="P",
        help="flag inputs whose log p(x) is below the P quantile of the run's held-out data "
        "(0 < P < 1; adds columns threshold and anomaly)",
    )
    p.add_argument("--out", type=output_file, help="CSV file to write (default: standard output)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(handler=cmd_score)


def _add_threads_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threads",
        type=whole_number(1, MAX_THREADS),
        metavar="N",
        help="CPU threads of the importance-weighted bound (default: one per core); the "
        "numbers do not depend on it",
    )


def _add_encode(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "encode",
        help="export posterior means (and log-variances)",
        description="Encode the run's held-out data (or --data); write mu (.npy), mu, logvar and y "
        "(.npz), or a CSV "
        "with mu_*, logvar_* and label columns.",
    )
    add_run_flags(p, out=False)
    add_data_flags(p)
    p.add_argument("--out", type=output_file, required=True, help="latents.npy, .npz or .csv")
    p.set_defaults(handler=cmd_encode)


def _add_quality(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "quality",
        help="score samples against test images (Frechet distance, precision, recall)",
        description="Draw -n samples and compare them with the test split of the run's MNIST or "
        "Fashion-MNIST data in the features of a small classifier shipped with vaekit: Frechet "
        "distance, precision and recall (k=3), the classifier's confidence and entropy on the "
        "samples. Not comparable to published FID (Inception on natural images).",
    )
    add_run_flags(p, out=False)
    p.add_argument("--data-dir", help="where named data sets live")
    p.add_argument(
        "-n", type=whole_number(2, 100_000), default=10_000, help="samples to draw (default 10,000)"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_quality)


def _add_disentanglement(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "disentanglement",
        help="MIG and DCI of a run on shapes (data with known generative factors)",
        description="Draw -n images of the run's shapes grid with their factors (shape, scale, "
        "orientation, x, y), encode them (posterior means) and score the code: MIG with each "
        "factor's gap, DCI disentanglement, completeness and informativeness. Prints a table "
        "and writes disentanglement.json into RUN. Needs the sklearn extra.",
    )
    add_run_flags(p, out=False)
    p.add_argument(
        "-n",
        type=whole_number(10, shapes.FULL.n_images),
        help="images to draw (default 10,000, or the whole grid when it is smaller)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_disentanglement)
