"""The PyTorch engine: :class:`vaekit.engines.torch.model.VAEModule` plus its optimizer and
generator."""

from __future__ import annotations

import base64
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from vaekit.config.limits import PRECISIONS
from vaekit.config.rules import check_device
from vaekit.config.settings import ModelConfig
from vaekit.engines.handwritten import model as handwritten
from vaekit.engines.protocol import (
    DataOnDevice,
    DeviceReading,
    EngineOptions,
    Posterior,
    StepMetrics,
)
from vaekit.engines.torch import distributed
from vaekit.engines.torch.distributed import Group
from vaekit.engines.torch.model import Minibatch, TrainingObjective, VAEModule
from vaekit.engines.torch.optimizers import FusedAdam
from vaekit.engines.torch.prior_modules import StandardNormalModule
from vaekit.errors import ConfigError
from vaekit.model import objectives
from vaekit.model.priors import Prior

#: Engine-neutral names of optimizer state arrays, by optimizer: checkpoint name → torch name.
OPTIMIZER_SLOTS = {
    "adam": {"exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq"},
    "sgd": {"momentum": "momentum_buffer"},
}


def available_devices() -> list[str]:
    """The devices PyTorch sees here: ``cpu``, ``cuda:0`` … ``cuda:N−1``, ``mps``."""
    cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    mps = ["mps"] if torch.backends.mps.is_available() else []
    return ["cpu", *(f"cuda:{i}" for i in range(cuda)), *mps]


def resolve_device(device: str) -> torch.device:
    """The torch device for a ``--device`` value (see :func:`vaekit.config.settings.check_device`):
    ``auto`` → CUDA when PyTorch sees a GPU, else the CPU (MPS only when asked for); ``cuda``,
    ``cuda:N`` or ``mps`` that this machine lacks is a ConfigError naming what it has."""
    check_device(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "mps" and not torch.backends.mps.is_available():
        raise _missing(device, "PyTorch sees no MPS (Apple GPU) device")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise _missing(device, "PyTorch sees no CUDA GPU")
        count = torch.cuda.device_count()
        if device != "cuda" and int(device[5:]) >= count:
            raise _missing(device, f"PyTorch sees {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
    return torch.device(device)


def _missing(device: str, why: str) -> ConfigError:
    return ConfigError(
        f"--device {device} was asked for, but {why}; available here: "
        f"{', '.join(available_devices())}"
    )


def _group_device(group: Group, device: str) -> str:
    """This rank's device under torchrun: its local rank's GPU (``cuda`` or ``auto`` with a GPU,
    see :func:`distributed.device_for`) or the CPU. One explicit ``cuda:N`` for every process
    and ``mps`` (torch.distributed has no MPS backend) are refused."""
    if device.startswith("cuda:"):
        raise ConfigError(
            f"under torchrun each process takes the GPU of its local rank, so --device {device} "
            "cannot hold for all of them; pass --device cuda and pick the GPUs with "
            "CUDA_VISIBLE_DEVICES"
        )
    if device == "mps":
        raise ConfigError("torch.distributed has no MPS backend; under torchrun use cpu or cuda")
    return distributed.device_for(group, device)


def check_precision(precision: str, config: ModelConfig, device: torch.device) -> None:
    """Refuse a ``precision`` the engine does not offer for ``config`` on ``device``: ``bf16``
    is the conv architecture's, on the CPU or a GPU with native bfloat16 (compute capability
    8.0 or newer). The MLP is refused: its dense layers run float32 oneDNN kernels on the CPU,
    which autocast does not reach, so bf16 would change nothing on the CPU and run untested on
    a GPU."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision == "fp32":
        return
    if config.arch != "conv":
        raise ConfigError(
            "--precision bf16 is for --arch conv: the MLP's dense layers run float32 oneDNN "
            "kernels on the CPU, which autocast does not reach; use --precision fp32"
        )
    if device.type == "cuda" and torch.cuda.get_device_capability(device) < (8, 0):
        raise ConfigError(
            f"--precision bf16 needs a GPU with bfloat16 arithmetic (compute capability 8.0 or "
            f"newer); {torch.cuda.get_device_name(device)} has none; use --precision fp32"
        )
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(
            f"--precision bf16 runs on cpu and cuda, not {device.type}; use --precision fp32"
        )


class InBfloat16:
    """A module's forward pass under bfloat16 autocast on ``device_type``, its outputs handed
    back as float32: the convolutions and matrix products compute in bfloat16, while the loss
    terms (−log p(x|z), KL, log q) and their sums stay float32 (float64 where evaluation asks)
    and the weights, gradients and optimizer state stay float32, so checkpoints are unchanged.
    A callable object, not a closure, so that the module still pickles."""

    def __init__(self, forward: Any, device_type: str) -> None:
        self.forward = forward
        self.device_type = device_type

    def __call__(self, *args: Any) -> Any:
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            out = self.forward(*args)
        return tuple(t.float() for t in out) if isinstance(out, tuple) else out.float()


class TorchEngine:
    """Trains and runs a :class:`VAE` on one device, with explicit, seeded randomness.

    With a ``group`` (torchrun's processes), construction joins the process group on this rank's
    device (its local GPU when CUDA is used, else the CPU) and wraps the training objective in
    ``DistributedDataParallel``; the training loop never sees the difference. With precision
    ``bf16`` the encoder's and decoder's forward passes, in training and evaluation alike, run
    under bfloat16 autocast (see :class:`InBfloat16`).
    """

    name = "torch"

    def __init__(
        self,
        config: ModelConfig,
        options: EngineOptions | None = None,
        *,
        group: Group | None = None,
        **overrides: Any,
    ) -> None:
        """``options`` as :func:`vaekit.engines.build_engine` takes them (or field by field as
        keywords)."""
        options = replace(options or EngineOptions(), **overrides)
        device = options.device
        if group is not None:
            device = _group_device(group, check_device(device))
        self.config = config
        self.device = resolve_device(device)
        check_precision(options.precision, config, self.device)
        if group is not None:
            distributed.start(group, device)
        self.group = group
        self.precision = options.precision
        with torch.random.fork_rng(devices=[]):  # seeded init without touching global RNG state
            torch.manual_seed(options.seed)
            self.model = VAEModule(config).to(self.device)
        if options.precision == "bf16":  # autocast around the networks only, not the losses
            for net in (self.model.encoder, self.model.decoder):
                net.forward = InBfloat16(net.forward, self.device.type)
        self.objective: torch.nn.Module = TrainingObjective(self.model)
        # the hand-written passes, not autograd, where they cover the model with the standard
        # prior, in float32, in one process: the same gradients without building a graph
        self.handwritten = (
            not handwritten.uncovered(config)
            and isinstance(self.model.prior, StandardNormalModule)
            and options.precision == "fp32"
            and group is None
        )
        if group is not None:  # joins the gradient average; rank 0's weights are broadcast
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.objective = DistributedDataParallel(self.objective, device_ids=ids)
        self.generator = torch.Generator(device=self.device).manual_seed(options.seed)
        self.optimizer_name = options.optimizer
        params = self.model.parameters()
        if options.optimizer == "adam":
            self.optimizer: FusedAdam | torch.optim.SGD = FusedAdam(
                params, lr=options.lr, eps=options.adam_eps
            )
        else:
            self.optimizer = torch.optim.SGD(params, lr=options.lr, momentum=options.momentum)
        self.step = 0
        self.dataset_size: int | None = None

    @property
    def on_cpu(self) -> bool:
        """Whether the engine computes on this machine's cores (its device is the CPU)."""
        return self.device.type == "cpu"

    @property
    def prior(self) -> Prior:
        """p(z) with the current weights (a learned prior changes as it trains)."""
        return self.model.prior_snapshot()

    def _tensor(self, a: np.ndarray, flatten: bool = True) -> torch.Tensor:
        """A float32 tensor on the engine's device; ``flatten``: to (N, D)."""
        a = np.ascontiguousarray(a, dtype=np.float32)
        return torch.from_numpy(a.reshape(len(a), -1) if flatten else a).to(self.device)

    def _labels(self, y: np.ndarray | None) -> torch.Tensor | None:
        return None if y is None else torch.from_numpy(np.asarray(y, np.int64)).to(self.device)

    def train_step(self, x: np.ndarray, beta: float, y: np.ndarray | None = None) -> StepMetrics:
        """One step on the global batch ``x``. Alone, on all of it; in a process group, on this
        rank's share of the rows, with the loss scaled by world size / global batch so that
        DDP's gradient average is the gradient of the global batch mean."""
        batch = len(x)
        eps = self.noise(batch)  # every rank alike
        rows = slice(None) if self.group is None else self.group.rows(batch)
        xb = self._tensor(x[rows])
        yb = None if y is None else self._labels(y[rows])
        values = self.backward(xb, yb, eps[..., rows, :], beta, batch).tolist()  # one sync
        metrics = StepMetrics(*values)
        if np.isfinite(values).all():  # the same decision on every rank: the totals are global
            self.optimizer.step()
            self.step += 1
        return metrics

    def noise(self, batch: int) -> torch.Tensor:
        """ε ~ N(0, I) for a step on ``batch`` rows, from the engine's generator: (batch,
        noise_dim), with the iwae objective (iw_samples, batch, noise_dim)."""
        shape = (batch, self.config.noise_dim)
        if self.config.objective == "iwae":
            shape = (self.config.iw_samples, *shape)
        return torch.randn(shape, generator=self.generator, device=self.device)

    def backward(
        self,
        xb: torch.Tensor,
        yb: torch.Tensor | None,
        eps: torch.Tensor,
        beta: float,
        batch: int,
    ) -> torch.Tensor:
        """Gradients of the model's objective on this rank's rows ``xb`` (labels ``yb``, noise
        ``eps``) of a global batch of ``batch`` rows, left in the parameters' ``.grad``; returns
        the detached (loss, recon, kl), nats per example, still on the device."""
        if self.handwritten:
            return self._handwritten_backward(xb, yb, eps, beta, batch)
        self.model.train()
        cfg = self.config
        world = 1 if self.group is None else self.group.world_size
        if cfg.objective == "iwae":
            bound, recon_sum, kl_sum = self.objective(xb, eps, yb, beta)
            totals = self._all_sum(torch.stack([bound, recon_sum, kl_sum]).detach()) / batch
            loss, recon, kl = -totals[0], totals[1], totals[2]
            objective = -bound
        elif cfg.objective == "tcvae":  # recon + KL + (β − 1)·TC: the loop's β weighs TC
            recon_sum, kl_sums, tc_sum = self.objective(xb, eps, yb, beta, self._minibatch(batch))
            loss, recon, kl, objective = self._elbo_loss(recon_sum, kl_sums, 1.0, batch)
            tc = self._all_sum(tc_sum.detach()) / batch
            loss = loss + (beta - 1.0) * tc
            objective = objective + (beta - 1.0) * tc_sum
        else:
            recon_sum, kl_sums = self.objective(xb, eps, yb, beta)
            loss, recon, kl, objective = self._elbo_loss(recon_sum, kl_sums, beta, batch)
        self.optimizer.zero_grad(set_to_none=True)
        (objective * (world / batch)).backward()
        return torch.stack([loss, recon, kl])

    @torch.no_grad()
    def _handwritten_backward(
        self, xb: torch.Tensor, yb: torch.Tensor | None, eps: torch.Tensor, beta: float, batch: int
    ) -> torch.Tensor:
        """:meth:`backward` by :func:`vaekit.engines.handwritten.model.elbo_gradients`: the
        formulas the NumPy engine trains with, on this engine's tensors and products
        (:func:`vaekit.engines.torch.dense.linear`)."""
        params = dict(self.model.named_parameters())
        onehot = self.model.onehot(yb)
        recon, kl, grads = handwritten.elbo_gradients(
            self.config, params, self.model.prior.fixed, xb, eps, beta, onehot, yb
        )
        for name, param in params.items():
            param.grad = grads[name]
        loss, recon_mean, kl_mean, _ = self._elbo_loss(recon.sum(), kl.sum(axis=0), beta, batch)
        return torch.stack([loss, recon_mean, kl_mean])

    def put_data_on_device(
        self, x: np.ndarray, y: np.ndarray | None, dynamic: bool, *, required: bool
    ) -> DataOnDevice | None:
        """The training set on this engine's device (see :class:`TorchDataOnDevice`); unless
        ``required``, only on a CUDA GPU where its float32 bytes are under half the free
        memory (None otherwise)."""
        x_bytes = 4 * x.size
        if not required and not (
            self.device.type == "cuda" and 2 * x_bytes < torch.cuda.mem_get_info(self.device)[0]
        ):
            return None
        if self.optimizer_name == "sgd":  # foreach SGD ignores found_inf, fused SGD honours it
            self.optimizer = self._fused_sgd()
        return TorchDataOnDevice(self, x, y, dynamic)

    def _fused_sgd(self) -> torch.optim.SGD:
        """This engine's SGD rebuilt fused (its update then skips a step that ``found_inf``
        marks), with its state."""
        old = self.optimizer
        group = old.param_groups[0]
        params = [p for g in old.param_groups for p in g["params"]]
        fused = torch.optim.SGD(params, lr=group["lr"], momentum=group["momentum"], fused=True)
        for param in params:
            if param in old.state:
                fused.state[param] = old.state[param]
        return fused

    def _elbo_loss(
        self, recon_sum: torch.Tensor, kl_sums: torch.Tensor, beta: float, batch: int
    ) -> tuple[torch.Tensor, ...]:
        """(loss, recon, kl, objective) of recon + β·KL with free bits, from this rank's sums:
        the first three are means over the global batch of ``batch`` rows (nats per example),
        the objective is this rank's sum that backward differentiates."""
        totals = self._all_sum(torch.cat([recon_sum.detach()[None], kl_sums.detach()]))
        recon, kl_means = totals[0] / batch, totals[1:] / batch
        kl_term, mask = objectives.free_bits(kl_means, self.config.free_bits)
        if mask is not None:  # dimensions held at λ get no KL gradient
            kl_sums = kl_sums * mask
        return recon + beta * kl_term, recon, kl_means.sum(), recon_sum + beta * kl_sums.sum()

    def set_dataset_size(self, n: int) -> None:
        """N, the number of training examples, which the tcvae objective's minibatch-weighted
        sampling needs (the loop passes it before its first step, also on resume)."""
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
            raise ConfigError(f"the data set size must be a whole number 1 or more, got {n!r}")
        self.dataset_size = int(n)

    def _minibatch(self, batch: int) -> Minibatch:
        """N and the gathering of the whole batch's posteriors, for the tcvae objective."""
        if self.dataset_size is None:
            raise ConfigError(
                "the tcvae objective needs the training set's size: call set_dataset_size(N) "
                "before train_step"
            )
        if self.group is None:
            return Minibatch(self.dataset_size, lambda values: values)
        return Minibatch(
            self.dataset_size,
            lambda values: distributed.gather_rows(values, self.group, batch),
        )

    def _all_sum(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` summed over the process group (themselves, alone)."""
        if self.group is not None:
            torch.distributed.all_reduce(values)
        return values

    @torch.no_grad()
    def elbo_terms(
        self, x: np.ndarray, eps: np.ndarray, y: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        self.model.eval()
        recon, kl = self.model.elbo_terms(self._tensor(x), self._tensor(eps), self._labels(y))
        return recon.double().cpu().numpy(), kl.double().cpu().numpy()

    @torch.no_grad()
    def log_weights(
        self, x: np.ndarray, posterior: Posterior, eps: np.ndarray, y: np.ndarray | None = None
    ) -> np.ndarray:
        if self.model.training:  # called once per chunk of k samples: no walk over the modules
            self.model.eval()
        mu, logvar = (self._tensor(a) for a in posterior)
        eps_t = self._tensor(eps, flatten=False)
        xb, yb = self._tensor(x), self._labels(y)
        log_w, _ = self.model.log_weights(xb, eps_t, yb, posterior=(mu, logvar))
        return log_w.double().cpu().numpy()

    @torch.no_grad()
    def encode(self, x: np.ndarray, y: np.ndarray | None = None) -> Posterior:
        self.model.eval()
        mu, logvar = self.model.encode(self._tensor(x), self._labels(y))
        return mu.cpu().numpy(), logvar.cpu().numpy()

    @torch.no_grad()
    def decode(self, z: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
        self.model.eval()
        mean = self.model.decode(self._tensor(z), self._labels(y))
        return mean.cpu().numpy().reshape(len(z), *self.config.input_shape)

    def set_learning_rate(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def get_weights(self) -> dict[str, np.ndarray]:
        return {k: v.detach().cpu().numpy().copy() for k, v in self.model.state_dict().items()}

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        tensors = {k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in weights.items()}
        self.model.load_state_dict(tensors, strict=True)

    def get_training_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        slots = OPTIMIZER_SLOTS[self.optimizer_name]
        arrays: dict[str, np.ndarray] = {}
        for name, param in self.model.named_parameters():
            state = self.optimizer.state.get(param, {})
            for slot, torch_key in slots.items():
                if state.get(torch_key) is not None:
                    arrays[f"{slot}/{name}"] = state[torch_key].detach().cpu().numpy().copy()
        rng = base64.b64encode(self.generator.get_state().numpy().tobytes()).decode("ascii")
        meta = {"optimizer": self.optimizer_name, "step": self.step, "torch_generator": rng}
        return arrays, meta

    def set_training_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        slots = OPTIMIZER_SLOTS[self.optimizer_name]
        step = int(meta["step"])
        for name, param in self.model.named_parameters():
            state: dict[str, Any] = {}
            for slot, torch_key in slots.items():
                key = f"{slot}/{name}"
                if key in arrays:
                    state[torch_key] = torch.from_numpy(np.array(arrays[key])).to(self.device)
            if state:
                if self.optimizer_name == "adam":  # fused: the count lives with the weights
                    state["step"] = torch.tensor(float(step), device=self.device)
                self.optimizer.state[param] = state
        self.step = step
        if "torch_generator" in meta:
            raw = np.frombuffer(base64.b64decode(meta["torch_generator"]), dtype=np.uint8)
            self.generator.set_state(torch.from_numpy(raw.copy()))


class TorchDataOnDevice:
    """The training set x (N, D) float32 and labels y (N,) int64, uploaded once to the engine's
    device. Each epoch uploads only its order; a step's batch is x[order[start:stop]], with
    ``dynamic`` binarization drawn there from the engine's generator (1 where u_ij < x_ij,
    u ~ U[0, 1): the host's rule), whose state every checkpoint keeps, so a resumed run draws the
    same.

    Nothing in a step reads the device: the epoch's sums Σ rows·(loss, recon, kl) (nats)
    accumulate there, and the divergence guard is the optimizer's ``found_inf``, a sticky flag
    set by the first non-finite (loss, recon, kl), which makes the fused update (Adam; SGD is
    rebuilt fused, keeping its state) skip that step and every later one, undoing its step count,
    while the first bad step's number and loss are recorded on the device for :meth:`read`."""

    def __init__(
        self, engine: TorchEngine, x: np.ndarray, y: np.ndarray | None, dynamic: bool
    ) -> None:
        """Upload the training set ``x`` (and labels ``y``) to ``engine``'s device."""
        self.engine, self.dynamic = engine, dynamic
        self.x, self.y = engine._tensor(x), engine._labels(y)
        device = engine.device
        self.order = torch.zeros(0, dtype=torch.int64, device=device)
        self.sums = torch.zeros(3, device=device)
        self.last = torch.zeros(3, device=device)
        self.found_inf = torch.zeros((), device=device)  # 1.0 from the first non-finite loss on
        self.bad_step = torch.zeros((), dtype=torch.int64, device=device)
        self.bad_loss = torch.zeros((), device=device)
        self.last_step = 0
        self.settled = False

    def shuffle(self, order: np.ndarray) -> None:
        self.order = torch.from_numpy(np.asarray(order, np.int64)).to(self.engine.device)
        self.sums.zero_()

    def train_step(self, start: int, stop: int, beta: float, step: int) -> None:
        engine = self.engine
        index = self.order[start:stop]
        xb = self.x.index_select(0, index)
        if self.dynamic:
            u = torch.rand(xb.shape, generator=engine.generator, device=engine.device)
            xb = objectives.bernoulli_draw(xb, u)
        yb = None if self.y is None else self.y.index_select(0, index)
        batch = stop - start
        values = engine.backward(xb, yb, engine.noise(batch), beta, batch)
        bad = ~torch.isfinite(values).all()
        first = bad & (self.found_inf == 0)
        self.bad_step = torch.where(first, step, self.bad_step)
        self.bad_loss = torch.where(first, values[0], self.bad_loss)
        torch.maximum(self.found_inf, bad.float(), out=self.found_inf)
        engine.optimizer.found_inf = self.found_inf
        try:
            engine.optimizer.step()
        finally:
            engine.optimizer.found_inf = None  # the host path's steps decide on the host
        engine.step += 1
        self.last = values
        self.sums += values * batch
        self.last_step = step

    def read(self) -> DeviceReading:
        sums, last, (flag, step, loss) = self._fetch()
        if not flag:
            return DeviceReading(sums, StepMetrics(*last), None)
        step = int(step)
        if not self.settled:  # the steps from the bad one on changed nothing
            self.engine.step -= self.last_step - step + 1
            self.settled = True
        return DeviceReading(sums, StepMetrics(*last), (step, loss))

    def _fetch(self) -> tuple[np.ndarray, list[float], list[float]]:
        """The epoch's sums, the last step's metrics and (flag, first bad step, its loss), in one
        transfer from the device (float64 holds the step number exactly)."""
        parts = (self.sums, self.last, self.found_inf, self.bad_step, self.bad_loss)
        values = torch.cat([t.double().reshape(-1) for t in parts]).cpu().numpy()
        return values[:3], values[3:6].tolist(), values[6:].tolist()
