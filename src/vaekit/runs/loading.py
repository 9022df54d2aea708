"""A run's engine: its config and its last or best weights, built into an engine, read-only (safe
while another process trains the run)."""

from __future__ import annotations

from pathlib import Path

from vaekit.engines import Engine, build_engine
from vaekit.errors import ConfigError
from vaekit.runs.best_weights import load_best_weights, read_best
from vaekit.runs.checkpoint import load_weights
from vaekit.runs.config_file import read_config
from vaekit.runs.layout import WHICH


def weights_of(run_dir: Path, which: str | None = None) -> str:
    """Which weights of the run a reader uses: ``which`` (``last`` or ``best``) when given,
    else the run's own choice: ``best`` where it kept best weights (every ``--epochs auto``
    run, and ``--keep best``: the weights its held-out score chose), else ``last``."""
    if which is None:
        return "best" if read_best(run_dir) is not None else "last"
    if which not in WHICH:
        raise ConfigError(f"which must be one of {', '.join(WHICH)}, not {which!r}")
    return which


def open_run(
    run_dir: Path,
    engine: str | None = None,
    device: str = "auto",
    which: str | None = None,
    *,
    trust_code: bool = False,
) -> Engine:
    """An engine holding a run's trained weights, ready to encode, decode and evaluate; it only
    reads the run, so it is safe while another process trains it.

    ``engine`` defaults to the one the run was trained with; either engine loads either's runs.
    ``which`` is ``last`` (the last checkpoint) or ``best`` (the best held-out −ELBO, kept by
    ``--keep best`` and ``--epochs auto``); None: the run's own choice (:func:`weights_of`).
    ``trust_code``: import the networks the run names by import path (see
    :func:`read_config`).
    """
    which = weights_of(run_dir, which)
    model, train, _ = read_config(run_dir, trust_code=trust_code)
    load = load_best_weights if which == "best" else load_weights
    weights = load(run_dir, model)
    runner = build_engine(model, engine or train.engine, seed=train.seed, device=device)
    runner.set_weights(weights)
    return runner
