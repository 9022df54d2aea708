"""The work count (vaekit.model.flops) against PyTorch's own count of the same work.

``torch.utils.flop_counter.FlopCounterMode`` counts the matrix multiplies and convolutions that
actually run (2 FLOPs per multiply-add) in one real training step of the torch engine: forward,
backward and the optimizer, by autograd or by the hand-written passes, through ``F.linear`` or
oneDNN (whose matmul it is taught here by the same rule). The count must equal it exactly, for
every model of the leaderboard and for the other parts a model can have."""

from __future__ import annotations

import importlib.util
import math
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from vaekit.config.settings import ModelConfig
from vaekit.engines import build_engine
from vaekit.engines.torch import dense
from vaekit.errors import ConfigError
from vaekit.measure.evaluation import evaluate_elbo, iwae_log_likelihood
from vaekit.model import flops

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
MNIST = {"input_shape": (1, 28, 28)}
BATCH = 7  # divides no count of pseudo-inputs below, so their share per example is a fraction
K = 4  # draws of the bound L_k: few enough for one call (its chunks hold 2**20 values)


def benchmark(name: str, monkeypatch):
    """benchmarks/NAME.py as a module."""
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # the leaderboard sets it where unset
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # for the helpers it imports from run.py
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)  # for its dataclasses
    spec.loader.exec_module(module)
    return module


def leaderboard_models(monkeypatch) -> dict[str, dict]:
    """benchmarks/leaderboard.py's models (their ModelConfig settings), by name."""
    models = benchmark("leaderboard", monkeypatch).MODELS
    return {name: entry.model for name, entry in models.items()}


#: Models beside the leaderboard's: each other part a network can have.
OTHERS = {
    "conv": {"arch": "conv", "conv_channels": (4, 8), "hidden": (32,), "latent_dim": 6},
    "conv, no hidden layers, two stochastic layers, VampPrior": {
        "arch": "conv",
        "conv_channels": (4,),
        "hidden": (),
        "decoder_hidden": (),
        "latent_dim": 6,
        "top_latent_dim": 3,
        "top_hidden": (5,),
        "prior": "vamp",
        "prior_components": 10,
    },
    "no hidden layers (the heads read x)": {"hidden": (), "decoder_hidden": (), "latent_dim": 3},
    "mixture prior, iwae k = 3": {
        "hidden": (20,),
        "latent_dim": 4,
        "prior": "mog",
        "prior_components": 9,
        "objective": "iwae",
        "iw_samples": 3,
    },
    "flow, iwae k = 2": {
        "hidden": (20, 10),
        "latent_dim": 4,
        "flow": "iaf",
        "flow_hidden": (12, 6),
        "objective": "iwae",
        "iw_samples": 2,
    },
    "conditional, class prior": {"hidden": (20,), "latent_dim": 4, "n_classes": 3},
    "conditional, VampPrior": {
        "hidden": (20,),
        "latent_dim": 4,
        "n_classes": 3,
        "prior": "vamp",
        "prior_components": 6,
    },
    "tcvae, gaussian, learned σ": {
        "hidden": (20,),
        "latent_dim": 4,
        "objective": "tcvae",
        "beta": 4.0,
        "likelihood": "gaussian",
        "learn_sigma": "per-dim",
    },
}


def _onednn_flops(input_shape, weight_shape, *args, out_shape=None, **kwargs) -> int:
    """oneDNN's h·Wᵀ (+ b): 2·in·out per row of h (what FlopCounterMode counts for addmm)."""
    return 2 * math.prod(input_shape) * weight_shape[0]


def measured(run) -> int:
    """The matrix-product FLOPs that PyTorch runs during ``run()``."""
    mapping = {}
    if dense.onednn_matmul_available():  # its check multiplies once: before counting
        mapping[torch.ops.mkldnn._linear_pointwise] = _onednn_flops
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        run()
    return counter.get_total_flops()


def _model(settings: dict) -> ModelConfig:
    return ModelConfig(**{**MNIST, **settings})


def _inputs(config: ModelConfig, rows: int) -> tuple[np.ndarray, np.ndarray | None]:
    rng = np.random.default_rng(0)
    x = (rng.random((rows, *config.input_shape)) < 0.3).astype(np.float32)
    y = rng.integers(0, config.n_classes, rows) if config.conditional else None
    return x, y


def _all_models(monkeypatch) -> dict[str, dict]:
    return {**leaderboard_models(monkeypatch), **OTHERS}


@pytest.mark.parametrize("onednn", [True, False], ids=["oneDNN", "F.linear"])
def test_one_training_step_runs_the_counted_flops(monkeypatch, onednn):
    """Every leaderboard model and every other part: FlopCounterMode's count of one step
    (autograd or the hand-written passes, whichever the engine takes) is the counted one."""
    monkeypatch.setattr(dense, "prefers_onednn", lambda: onednn)
    for name, settings in _all_models(monkeypatch).items():
        config = _model(settings)
        engine = build_engine(config, seed=0, device="cpu")
        engine.set_dataset_size(1000)  # as the loop does (the tcvae objective reads it)
        x, y = _inputs(config, BATCH)
        got = measured(partial(engine.train_step, x, 1.0, y))
        assert got == flops.training_step_flops(config, BATCH), name
        assert flops.training_flops(config, BATCH) == got / BATCH


def test_evaluation_runs_the_counted_flops(monkeypatch):
    """The test ELBO, and L_k in one call of its k draws, run the counted forward passes (a
    flow's L_k, which encodes x again for the flow, is left out)."""
    for name, settings in _all_models(monkeypatch).items():
        config = _model(settings)
        engine = build_engine(config, seed=0, device="cpu")
        x, y = _inputs(config, BATCH)
        elbo = measured(partial(evaluate_elbo, engine, x, y=y, batch_size=BATCH))
        assert elbo == BATCH * flops.evaluation_flops(config, 1, BATCH), name
        if config.flow == "none":
            # threads=1: the counter sees the operations of its own thread only
            bound = measured(partial(iwae_log_likelihood, engine, x, K, y=y, threads=1))
            assert bound == BATCH * flops.evaluation_flops(config, K, BATCH), name


def test_the_reference_model_and_the_rules_of_the_count():
    """benchmarks/run.py's 784-400-20 model: 3.280 MFLOP per training example (forward
    1.3024, the weights' gradients as much again, the inputs' gradients but x's); the VampPrior
    shares its pseudo-inputs' work among a step's examples; an epoch's last, smaller step counts
    its own examples."""
    reference = ModelConfig(hidden=(400,), latent_dim=20)
    forward = 2 * (784 * 400 + 2 * 400 * 20 + 20 * 400 + 400 * 784)
    assert flops.evaluation_flops(reference) == forward == 1_302_400
    assert flops.training_flops(reference, 128) == 2 * forward + forward - 2 * 784 * 400
    assert flops.training_flops(reference, 128) == 3_280_000
    vamp = ModelConfig(hidden=(400,), latent_dim=20, prior="vamp", prior_components=50)
    shared = flops.training_flops(vamp, 10) - flops.training_flops(vamp, 50)
    encoder = 3 * 2 * (784 * 400 + 2 * 400 * 20)  # with the pseudo-inputs' gradient
    assert shared == pytest.approx(50 * encoder * (1 / 10 - 1 / 50))
    assert flops.epoch_flops(vamp, 25, 10) == 2 * flops.training_step_flops(
        vamp, 10
    ) + flops.training_step_flops(vamp, 5)


def test_the_speed_benchmarks_products_are_the_counted_work(monkeypatch):
    """benchmarks/run.py times the reference model's step as a list of matrix products (to
    measure the GEMM rate at its shapes), and counts its work with this module: they agree."""
    run = benchmark("run", monkeypatch)
    step = sum(2 * m * k * n for m, k, n in run.model_matmuls(128))
    assert step == 128 * run.flops_per_example()["train"] == 128 * 3_280_000


def test_your_own_networks_are_not_counted():
    config = ModelConfig(input_shape=(4,), hidden=(3,), latent_dim=2, encoder_module="a:B")
    with pytest.raises(ConfigError, match="not counted"):
        flops.training_flops(config, 10)
