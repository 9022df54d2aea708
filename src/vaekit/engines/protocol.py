"""The small protocol every engine follows, so that the loop, evaluation, figures and CLI never ask
which engine they hold.

Arrays cross the protocol as NumPy arrays: data batches of shape (N, *input_shape) or (N, D),
float32 in the model's units; latents (N, K); labels y, int64 (N,), which a conditional model
(``config.n_classes > 0``) requires and an unconditional one ignores. Weights cross it as a
dict of named arrays whose names and shapes are
:attr:`vaekit.config.ModelConfig.parameter_shapes`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from vaekit.config import ModelConfig


@dataclass(frozen=True)
class StepMetrics:
    """Batch means of one training step, in nats per example: loss = recon + beta·kl."""

    loss: float
    recon: float
    kl: float


class Engine(Protocol):
    """What an engine offers: one optimizer step, encode, decode, −log p(x|z), its state."""

    name: str
    config: ModelConfig
    optimizer_name: str  # "adam" or "sgd"

    def train_step(self, x: np.ndarray, beta: float, y: np.ndarray | None = None) -> StepMetrics:
        """One optimizer step on the batch ``x`` with the model's objective (mean(recon + beta·KL)
        with free bits, or the negative IWAE bound).

        Draws eps from the engine's own seeded generator. If the loss is not finite the weights
        are left unchanged and the (non-finite) metrics are returned for the caller to report.
        """
        ...

    def reconstruction_nll(
        self, x: np.ndarray, z: np.ndarray, y: np.ndarray | None = None
    ) -> np.ndarray:
        """−log p(x|z) in nats, float64: shape (N,) for latents z (N, K), one per input; or
        (S, N) for z (S, N, K), S latents per input, with x (and y) shared by the S samples."""
        ...

    def encode(self, x: np.ndarray, y: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(mu, logvar) of q(z|x), each (N, K)."""
        ...

    def decode(self, z: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
        """The mean of p(x|z), shape (N, *input_shape): probabilities or the Gaussian mean."""
        ...

    def set_learning_rate(self, lr: float) -> None:
        """Use ``lr`` for the steps that follow (the loop's per-epoch schedule)."""
        ...

    def get_weights(self) -> dict[str, np.ndarray]: ...

    def set_weights(self, weights: dict[str, np.ndarray]) -> None: ...

    def get_training_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Optimizer arrays (engine-neutral names, see :mod:`vaekit.checkpoint`) and JSON-able
        scalars: optimizer step count and the state of the engine's random generator."""
        ...

    def set_training_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None: ...
