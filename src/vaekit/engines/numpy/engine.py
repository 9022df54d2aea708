"""The NumPy engine: hand-written forward and backward passes behind the engine protocol."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from vaekit.config.settings import ModelConfig
from vaekit.engines.handwritten import model
from vaekit.engines.numpy.optim import SGD, Adam
from vaekit.engines.protocol import EngineOptions, Posterior, StepMetrics
from vaekit.errors import CheckpointError, ConfigError
from vaekit.model import objectives, priors


class NumpyEngine:
    """Trains and runs the VAE of ``config`` in NumPy, float32 (default) or float64."""

    name = "numpy"
    on_cpu = True

    def __init__(
        self,
        config: ModelConfig,
        options: EngineOptions | None = None,
        *,
        dtype: type = np.float32,
        **overrides: Any,
    ) -> None:
        """``options`` as :func:`vaekit.engines.build_engine` takes them (or field by field as
        keywords); ``dtype``: float32 or float64 parameters and arithmetic."""
        options = replace(options or EngineOptions(), **overrides)
        if options.device not in ("auto", "cpu"):
            raise ConfigError(
                f"the numpy engine runs on the CPU only, not {options.device}; use --engine torch"
            )
        if options.precision != "fp32":
            raise ConfigError(
                "the numpy engine computes in float32 (or float64), not bf16; --precision bf16 "
                "is the torch engine's, for the conv architecture"
            )
        uncovered = model.uncovered(config)
        if uncovered:
            alternative = " or --prior class" if config.n_classes else ""
            raise ConfigError(
                f"the numpy engine's hand-written backward pass covers the MLP VAE with the "
                f"ELBO objective and the standard and class priors of one stochastic layer, not "
                f"{' or '.join(uncovered)}; use --engine torch{alternative}"
            )
        self.config = config
        self.dtype = np.dtype(dtype)
        init_rng, self.rng = (
            np.random.default_rng(s) for s in np.random.SeedSequence(options.seed).spawn(2)
        )
        self.params = model.init_params(config, init_rng, self.dtype)
        self.optimizer_name = options.optimizer
        self.optimizer = (
            Adam(options.lr, eps=options.adam_eps)
            if options.optimizer == "adam"
            else SGD(options.lr, options.momentum)
        )

    @property
    def prior(self) -> priors.Prior:
        """p(z) with the current weights (the class prior's are learned), float64 copies."""
        learned = {
            name: value.astype(np.float64)
            for name, value in self.params.items()
            if name.startswith("prior.")
        }
        return priors.for_config(self.config, learned)

    def _prior(self) -> priors.Prior:
        """p(z) on the live weights, in the engine's dtype (what the loss and its gradient use)."""
        return priors.for_config(self.config, self.params)

    def _flat(self, a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a, dtype=self.dtype).reshape(len(a), -1)

    def _onehot(self, y: np.ndarray | None) -> np.ndarray | None:
        if not self.config.conditional:
            return None
        if y is None:
            raise ConfigError("this model is conditional: it needs a class label for each input")
        onehot = np.zeros((len(y), self.config.n_classes), dtype=self.dtype)  # not eye(C)[y]:
        onehot[np.arange(len(y)), y] = 1  # N·C values, never C·C
        return onehot

    def loss_and_grads(
        self, x: np.ndarray, eps: np.ndarray, beta: float, y: np.ndarray | None = None
    ) -> tuple[float, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """(L, recon and kl per example, ∂L/∂θ) for given eps, where
        L = mean(recon) + β·Σ_k max(free_bits, mean(kl_k)) (= mean(recon + β·kl) without free
        bits), recon = −log p(x|z) and kl_k the prior's KL of latent dimension k."""
        x, eps = self._flat(x), self._flat(eps)
        recon, kl_dims, grads = model.elbo_gradients(
            self.config, self.params, self._prior(), x, eps, beta, self._onehot(y), y
        )
        kl_term, _ = objectives.free_bits(kl_dims.mean(axis=0), self.config.free_bits)
        objective = float(recon.mean()) + beta * float(kl_term)
        return objective, recon, kl_dims.sum(axis=1), grads

    def train_step(self, x: np.ndarray, beta: float, y: np.ndarray | None = None) -> StepMetrics:
        eps = self.rng.standard_normal((len(x), self.config.latent_dim), dtype=self.dtype)
        objective, recon, kl, grads = self.loss_and_grads(x, eps, beta, y)
        metrics = StepMetrics(objective, float(recon.mean()), float(kl.mean()))
        if np.isfinite(metrics.loss):
            self.optimizer.step(self.params, grads)
        return metrics

    def _reconstruction_nll(
        self, x: np.ndarray, z: np.ndarray, y: np.ndarray | None = None
    ) -> np.ndarray:
        """−log p(x|z), nats, in the engine's dtype: (N,) for z (N, K), or (S, N) for z
        (S, N, K), S latents per input sharing x (and y)."""
        samples = z.shape[:-1]  # (N,) or (S, N)
        labels = None if y is None else np.broadcast_to(y, samples).reshape(-1)
        flat_z = np.ascontiguousarray(z, dtype=self.dtype).reshape(-1, z.shape[-1])
        out, _, _ = model.decode(self.config, self.params, flat_z, self._onehot(labels))
        out = out.reshape(*samples, -1)
        return model.reconstruction_nll(self.config, self.params, self._flat(x), out)

    def elbo_terms(
        self, x: np.ndarray, eps: np.ndarray, y: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        mu, logvar = self.encode(x, y)
        z = objectives.reparameterize(mu, logvar, eps.astype(self.dtype))
        recon = self._reconstruction_nll(x, z, y)
        return recon.astype(np.float64), self._prior().kl(mu, logvar, y).astype(np.float64)

    def log_weights(
        self, x: np.ndarray, posterior: Posterior, eps: np.ndarray, y: np.ndarray | None = None
    ) -> np.ndarray:
        mu, logvar, eps = (np.asarray(a, dtype=self.dtype) for a in (*posterior, eps))
        z = objectives.reparameterize(mu, logvar, eps)
        recon = self._reconstruction_nll(x, z, y)
        log_q = objectives.gaussian_log_density(eps, logvar)
        log_w = objectives.log_weights(recon, self._prior().log_prob(z, y), log_q)
        return log_w.astype(np.float64)

    def encode(self, x: np.ndarray, y: np.ndarray | None = None) -> Posterior:
        mu, logvar, _, _ = model.encode(self.config, self.params, self._flat(x), self._onehot(y))
        return mu, logvar

    def decode(self, z: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
        out, _, _ = model.decode(self.config, self.params, self._flat(z), self._onehot(y))
        mean = objectives.LIKELIHOODS[self.config.likelihood].mean(out)
        return mean.reshape(len(z), *self.config.input_shape)

    def set_learning_rate(self, lr: float) -> None:
        self.optimizer.lr = lr

    def set_dataset_size(self, n: int) -> None:
        """The NumPy engine's objective (the ELBO) does not depend on the data set's size."""

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
