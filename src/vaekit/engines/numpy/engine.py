"""The NumPy engine: hand-written forward and backward passes behind the engine protocol."""

from __future__ import annotations

from typing import Any

import numpy as np

from vaekit.config import ModelConfig
from vaekit.engines.numpy import model
from vaekit.engines.numpy.layers import sigmoid
from vaekit.engines.numpy.optim import SGD, Adam
from vaekit.engines.protocol import StepMetrics
from vaekit.errors import CheckpointError, ConfigError


class NumpyEngine:
    """Trains and runs the VAE of ``config`` in NumPy, float32 (default) or float64."""

    name = "numpy"

    def __init__(
        self,
        config: ModelConfig,
        *,
        seed: int = 0,
        device: str = "auto",
        optimizer: str = "adam",
        lr: float = 1e-3,
        momentum: float = 0.0,
        adam_eps: float = 1e-8,
        dtype: type = np.float32,
    ) -> None:
        if device == "cuda":
            raise ConfigError("the numpy engine runs on the CPU only; use --engine torch for CUDA")
        if config.arch != "mlp" or config.objective != "elbo":
            raise ConfigError(
                "the numpy engine implements the MLP VAE with the ELBO objective; use "
                "--engine torch for the conv architecture or the iwae objective"
            )
        self.config = config
        self.dtype = np.dtype(dtype)
        init_rng, self.rng = (
            np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2)
        )
        self.params = model.init_params(config, init_rng, self.dtype)
        self.optimizer_name = optimizer
        self.optimizer = Adam(lr, eps=adam_eps) if optimizer == "adam" else SGD(lr, momentum)

    def _flat(self, a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a, dtype=self.dtype).reshape(len(a), -1)

    def _onehot(self, y: np.ndarray | None) -> np.ndarray | None:
        if not self.config.conditional:
            return None
        if y is None:
            raise ConfigError("this model is conditional: it needs a class label for each input")
        return np.eye(self.config.n_classes, dtype=self.dtype)[np.asarray(y)]

    def loss_and_grads(
        self, x: np.ndarray, eps: np.ndarray, beta: float, y: np.ndarray | None = None
    ) -> tuple[float, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """(L, recon and kl per example, ∂L/∂θ) for given eps, where
        L = mean(recon) + β·Σ_k max(free_bits, mean(kl_k)) (= mean(recon + β·kl) without free
        bits)."""
        x, eps = self._flat(x), self._flat(eps)
        f = model.forward(self.config, self.params, x, eps, self._onehot(y))
        recon, kl = model.loss_terms(self.config, self.params, x, f)
        kl_term = float(kl.mean())
        if self.config.free_bits > 0:
            kl_dims = 0.5 * (np.exp(f.logvar) + f.mu * f.mu - 1.0 - f.logvar).mean(axis=0)
            kl_term = float(np.maximum(kl_dims, self.config.free_bits).sum())
        objective = float(recon.mean()) + beta * kl_term
        return objective, recon, kl, model.backward(self.config, self.params, x, f, beta)

    def train_step(self, x: np.ndarray, beta: float, y: np.ndarray | None = None) -> StepMetrics:
        eps = self.rng.standard_normal((len(x), self.config.latent_dim), dtype=self.dtype)
        objective, recon, kl, grads = self.loss_and_grads(x, eps, beta, y)
        metrics = StepMetrics(objective, float(recon.mean()), float(kl.mean()))
        if np.isfinite(metrics.loss):
            self.optimizer.step(self.params, grads)
        return metrics

    def reconstruction_nll(
        self, x: np.ndarray, z: np.ndarray, y: np.ndarray | None = None
    ) -> np.ndarray:
        samples = z.shape[:-1]  # (N,) or (S, N)
        labels = None if y is None else np.broadcast_to(y, samples).reshape(-1)
        flat_z = np.ascontiguousarray(z, dtype=self.dtype).reshape(-1, z.shape[-1])
        out, _, _ = model.decode(self.config, self.params, flat_z, self._onehot(labels))
        out = out.reshape(*samples, -1)
        nll = model.reconstruction_nll(self.config, self.params, self._flat(x), out)
        return nll.astype(np.float64)

    def encode(self, x: np.ndarray, y: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        mu, logvar, _, _ = model.encode(self.config, self.params, self._flat(x), self._onehot(y))
        return mu, logvar

    def decode(self, z: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
        out, _, _ = model.decode(self.config, self.params, self._flat(z), self._onehot(y))
        mean = sigmoid(out) if self.config.likelihood == "bernoulli" else out
        return mean.reshape(len(z), *self.config.input_shape)

    def set_learning_rate(self, lr: float) -> None:
        self.optimizer.lr = lr

    def get_weights(self) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in self.params.items()}

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        if set(weights) != set(self.params):
            raise CheckpointError("the weights do not match the model's parameter names")
        self.params = {k: np.array(weights[k], dtype=self.dtype) for k in self.params}

    def get_training_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays = {
            f"{slot}/{name}": value.copy()
            for slot, values in self.optimizer.state.items()
            for name, value in values.items()
        }
        meta = {
            "optimizer": self.optimizer_name,
            "step": self.optimizer.step_count,
            "numpy_generator": self.rng.bit_generator.state,
        }
        return arrays, meta

    def set_training_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        for key, value in arrays.items():
            slot, _, name = key.partition("/")
            if slot in self.optimizer.state:
                self.optimizer.state[slot][name] = np.array(value, dtype=self.dtype)
        self.optimizer.step_count = int(meta["step"])
        if "numpy_generator" in meta:
            self.rng.bit_generator.state = meta["numpy_generator"]
