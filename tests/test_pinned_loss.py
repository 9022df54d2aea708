"""The losses of a fixed-seed run, pinned: a speed change must not change what is learned.

The reference model (784-400-20, ReLU, Bernoulli, Adam 1e-3, batch 128) trains 2 epochs on the
bundled mnist-small with seed 0 through the real training loop. The pinned numbers were recorded
before any speed work; matrix-multiply libraries may sum in another order, so agreement is to a
relative 1e-4 (float32 rounding, grown over 80 Adam steps), far below any real change.
"""

from __future__ import annotations

import pytest

from vaekit.config.settings import ModelConfig, TrainConfig
from vaekit.data.pipeline import TrainingData
from vaekit.train.loop import fit
from vaekit.train.start import engine_for

#: (train loss, test −ELBO) per epoch, nats per example, for seed 0.
PINNED = {
    "torch": [(287.46240, 215.14030), (206.79006, 193.96625)],
    "numpy": [(284.16617, 215.78361), (207.65678, 195.73618)],
}


@pytest.mark.parametrize("engine", sorted(PINNED))
def test_reference_model_losses_are_pinned(engine):
    config = TrainConfig(data="mnist-small", engine=engine, epochs=2, seed=0)
    history = fit(engine_for(ModelConfig(), config), config, TrainingData.load(config))
    measured = [(record["loss"], record["test_loss"]) for record in history]
    for got, want in zip(measured, PINNED[engine], strict=True):
        assert got == pytest.approx(want, rel=1e-4)
