"""``vaekit disentanglement RUN``: MIG and DCI of a run trained on a data set with known
generative factors (``shapes``, ``shapes-small``).

n images are drawn without replacement from the run's grid by the seed
(:func:`vaekit.data.shapes.generate`: the same images and factors for the same n and seed, all of
them when n is the grid's size), read as the run's inputs (its scaling and binarization,
:func:`vaekit.runs.inputs.model_inputs`), and encoded; the code is the posterior mean μ(x) (K
dimensions: z1's with two stochastic layers, before any flow). MIG and DCI
(:mod:`vaekit.measure.disentanglement`) score the code against the images' factor indices. The
images come from the grid the run trained on, its validation part included: the metrics describe the
representation of the data distribution, not generalisation.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vaekit import disk
from vaekit.data import shapes
from vaekit.data.dataset import RawData
from vaekit.engines.sampling import posterior_means
from vaekit.errors import ConfigError
from vaekit.measure import disentanglement
from vaekit.runs import config_file, loading
from vaekit.runs.inputs import model_inputs

#: Images drawn when n is not given (or the whole grid when it is smaller).
DEFAULT_N = 10_000
#: The file the record is written to, in the run directory.
RESULT_FILE = "disentanglement.json"


def factor_grid(run_dir: str | Path) -> tuple[str, shapes.ShapesGrid]:
    """(data set name, its factor grid) of the run, or ConfigError when its data set has no
    known generative factors."""
    _, train, _ = config_file.read_config(run_dir)
    if train.data not in shapes.DATASETS:
        raise ConfigError(
            f"{run_dir} was trained on {Path(train.data).name!r}, which has no known generative "
            f"factors; disentanglement metrics need a run on {' or '.join(shapes.DATASETS)} "
            "(vaekit train --data shapes)"
        )
    return train.data, shapes.DATASETS[train.data]


def score_codes(codes: np.ndarray, factors: np.ndarray, seed: int = 0) -> dict:
    """MIG and DCI of ``codes`` (N, K) against ``factors`` (N, 5): a JSON-able record with the
    factor names, ``mig`` (:meth:`MIGResult.as_dict`) and ``dci`` (:meth:`DCIResult.as_dict`)."""
    return {
        "factors": list(shapes.FACTOR_NAMES),
        "mig": disentanglement.mig(codes, factors).as_dict(),
        "dci": disentanglement.dci(codes, factors, seed=seed).as_dict(),
    }


def score_run(
    run_dir: str | Path,
    n: int | None = None,
    seed: int = 0,
    *,
    engine_name: str | None = None,
    device: str = "auto",
    which: str | None = None,
) -> dict:
    """:func:`score_codes` of n (default :data:`DEFAULT_N`, at most the grid's size) images of
    the run's grid drawn by ``seed`` (the seed of the forests too), encoded by the run's
    ``which`` weights; with the data set, n, seed, checkpoint and code size. Nothing is
    written (see :func:`write_result`)."""
    name, grid = factor_grid(run_dir)
    disentanglement.sklearn_module()  # before the work: a missing extra in one line
    n = min(DEFAULT_N, grid.n_images) if n is None else n
    drawn = shapes.generate(grid, n, seed)
    which = loading.weights_of(run_dir, which)
    engine = loading.open_run(run_dir, engine_name, device, which)
    raw = RawData(x=drawn.x, y=None, name=name, pixels=True)
    data, _ = model_inputs(run_dir, raw, f"{n:,} images of {name}")
    codes = posterior_means(engine, data.x, limit=len(data.x)).astype(np.float64)
    record = {"data": name, "n": n, "seed": seed, "checkpoint": which}
    return {**record, "code_dim": codes.shape[1], **score_codes(codes, drawn.factors, seed)}


def write_result(run_dir: str | Path, result: dict) -> Path:
    """Write ``result`` as the run's :data:`RESULT_FILE`, atomically; returns its path."""
    path = Path(run_dir) / RESULT_FILE
    disk.write_atomic(path, (json.dumps(result, indent=2) + "\n").encode())
    return path


def table(result: dict) -> str:
    """The record as text: the overall scores, then one row per factor (MIG gap, H(v_f) in
    nats, DCI completeness and held-out accuracy)."""
    mig, dci = result["mig"], result["dci"]
    lines = [
        f"{result['n']:,} images of {result['data']} (seed {result['seed']}), "
        f"{result['code_dim']} code dimensions (posterior means, {result['checkpoint']} weights)",
        f"MIG {mig['mig']:.3f}   DCI: disentanglement {dci['disentanglement']:.3f}  "
        f"completeness {dci['completeness']:.3f}  informativeness {dci['informativeness']:.3f}",
        f"{'factor':<12} {'MIG gap':>8} {'H nats':>7} {'complete':>9} {'accuracy':>9}",
    ]
    rows = zip(
        result["factors"],
        mig["gaps"],
        mig["entropy"],
        dci["factor_completeness"],
        dci["factor_accuracy"],
        strict=True,
    )
    lines += [f"{f:<12} {g:>8.3f} {h:>7.3f} {c:>9.3f} {a:>9.3f}" for f, g, h, c, a in rows]
    return "\n".join(lines)
