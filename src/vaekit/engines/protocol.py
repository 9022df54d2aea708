"""The small protocol every engine follows, so that the loop, evaluation, figures and CLI never ask
which engine they hold.

Arrays cross the protocol as NumPy arrays: data batches of shape (N, *input_shape) or (N, D),
float32 in the model's units; latents (N, K); labels y, int64 (N,), which a conditional model
(``config.n_classes > 0``) requires and an unconditional one ignores. Weights cross it as a
dict of named arrays whose names and shapes are
:func:`vaekit.model.parameters.shapes`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Protocol

import numpy as np

from vaekit.config.settings import ModelConfig, TrainConfig
from vaekit.model.priors import Prior

#: (mu, logvar) of q(z|x) = N(mu, diag e^logvar), each (N, K): what ``encode`` returns.
Posterior = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class EngineOptions:
    """How an engine is built and trains: its seed, device, precision (``fp32``, or ``bf16``:
    bfloat16 autocast around the networks' forward passes) and optimizer. Each field is the
    :class:`~vaekit.config.settings.TrainConfig` setting of the same name (defaults included)."""

    seed: int = TrainConfig.seed
    device: str = TrainConfig.device
    precision: str = TrainConfig.precision
    optimizer: str = TrainConfig.optimizer
    lr: float = TrainConfig.lr
    momentum: float = TrainConfig.momentum
    adam_eps: float = TrainConfig.adam_eps

    @classmethod
    def of(cls, config: TrainConfig) -> EngineOptions:
        """The options of a training configuration."""
        return cls(**{field.name: getattr(config, field.name) for field in fields(cls)})


@dataclass(frozen=True)
class StepMetrics:
    """Batch means of one training step, in nats per example: loss = recon + beta·kl (the
    objective's loss: for tcvae recon + kl + (beta − 1)·TC)."""

    loss: float
    recon: float
    kl: float


@dataclass(frozen=True)
class DeviceReading:
    """What :meth:`DataOnDevice.read` brings back from the device in one transfer: ``sums`` =
    Σ rows·(loss, recon, kl) over the epoch's steps so far (nats), the ``last`` step's metrics,
    and ``diverged``, (step, loss) of the first step whose loss, recon or kl was not finite
    (None while there is none)."""

    sums: np.ndarray
    last: StepMetrics
    diverged: tuple[int, float] | None


class DataOnDevice(Protocol):
    """A training set held on an engine's device for a run (:meth:`Engine.put_data_on_device`),
    whose steps never wait for the host: the loop reads numbers only through :meth:`read`."""

    def shuffle(self, order: np.ndarray) -> None:
        """Start an epoch: its order (a permutation of the rows, int64 (N,)) is uploaded once,
        and the epoch's sums start from zero."""
        ...

    def train_step(self, start: int, stop: int, beta: float, step: int) -> None:
        """:meth:`Engine.train_step` on the rows ``order[start:stop]`` (dynamically binarized
        there, if asked), adding rows·(loss, recon, kl) to the epoch's sums. A non-finite value
        is recorded with ``step``, the loop's step number, and from that step on no step changes
        the weights or the optimizer's state."""
        ...

    def read(self) -> DeviceReading:
        """The sums, last metrics and first non-finite step so far (one device sync); once it
        reports a divergence, the engine's step count is that of the steps taken before it."""
        ...


class Engine(Protocol):
    """What an engine offers: one optimizer step, encode, decode, the model's objective (ELBO
    terms and importance log-weights), its prior and its state."""

    name: str
    config: ModelConfig
    optimizer_name: str  # "adam" or "sgd"
    prior: Prior  # p(z): sampling and figures draw from it; the KL and log p(z) come from it
    on_cpu: bool  # computes on this machine's cores: evaluation may call it from several threads

    def train_step(self, x: np.ndarray, beta: float, y: np.ndarray | None = None) -> StepMetrics:
        """One optimizer step on the batch ``x`` with the model's objective (mean(recon + beta·KL)
        with free bits, the negative IWAE bound, or β-TCVAE's mean(recon + KL + (beta − 1)·TC)).

        Draws eps from the engine's own seeded generator. If the loss is not finite the weights
        are left unchanged and the (non-finite) metrics are returned for the caller to report.
        """
        ...

    def put_data_on_device(
        self, x: np.ndarray, y: np.ndarray | None, dynamic: bool, *, required: bool
    ) -> DataOnDevice | None:
        """Upload the training set ``x`` (and labels ``y``) to the engine's device for the run,
        ``dynamic``: each batch a fresh Bernoulli sample drawn there from the engine's
        generator. Unless ``required``, only where it pays and fits (the torch engine: a CUDA
        GPU with twice x's float32 bytes free), else None. Optional: an engine without it (the
        NumPy engine) trains from the host's memory, and ``data_on_device`` yes is refused."""
        ...

    def elbo_terms(
        self, x: np.ndarray, eps: np.ndarray, y: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(recon, kl) per example, nats, float64, each (N,): recon = −log p(x|z) at the draw
        z ~ q(z|x) that eps (N, ``config.noise_dim``) makes, and kl = KL(q(z|x) ‖ p(z)) in closed
        form where the model has one (``config.closed_form_kl``), else log q(z|x) − log p(z) at
        that z."""
        ...

    def log_weights(
        self, x: np.ndarray, posterior: Posterior, eps: np.ndarray, y: np.ndarray | None = None
    ) -> np.ndarray:
        """log w = log p(x|z) + log p(z) − log q(z|x), nats, float64, shape (S, N), for the S
        draws z ~ q(z|x) per input that eps (S, N, ``config.noise_dim``) makes (over both layers
        of a two-layer model, through the flow of a flow model); ``posterior`` = (mu, logvar)
        = encode(x, y), passed in so that evaluation encodes once for many chunks of samples.
        x (and y) are shared by the S samples, never copied S times."""
        ...

    def encode(self, x: np.ndarray, y: np.ndarray | None = None) -> Posterior:
        """(mu, logvar) of q(z|x), each (N, K): the Gaussian before any flow, of z1 for a
        two-layer model."""
        ...

    def decode(self, z: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
        """The mean of p(x|z), shape (N, *input_shape): probabilities or the Gaussian mean."""
        ...

    def set_learning_rate(self, lr: float) -> None:
        """Use ``lr`` for the steps that follow (the loop's per-epoch schedule)."""
        ...

    def set_dataset_size(self, n: int) -> None:
        """N, the number of training examples: the loop passes it before its first step (also
        on resume); the tcvae objective's minibatch-weighted sampling needs it."""
        ...

    def get_weights(self) -> dict[str, np.ndarray]: ...

    def set_weights(self, weights: dict[str, np.ndarray]) -> None: ...

    def get_training_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Optimizer arrays (engine-neutral names, see :mod:`vaekit.runs.checkpoint`) and JSON-able
        scalars: optimizer step count and the state of the engine's random generator."""
        ...

    def set_training_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None: ...
