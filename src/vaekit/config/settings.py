"""Model and training settings: frozen, validated dataclasses with a JSON round-trip.

:class:`ModelConfig` is the single source of truth for the architecture and the likelihood; both
engines build the same weights (same names, same shapes) from it. :class:`TrainConfig` holds
everything else a training run needs, so that a run directory's ``config.json`` reproduces it.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import asdict, dataclass, fields
from typing import Any

from vaekit.errors import ConfigError
from vaekit.model import objectives

ACTIVATIONS = ("relu", "elu", "tanh", "sigmoid", "softplus", "leaky_relu")
LIKELIHOODS = tuple(objectives.LIKELIHOODS)  # the names of objectives' table of likelihoods
SIGMA_MODES = ("fixed", "scalar", "per-dim")
ARCHITECTURES = ("mlp", "conv")
#: Training objectives: the negative ELBO (with β), the negative IWAE bound, and β-TCVAE
#: (the negative ELBO plus (β − 1) times the total correlation, Chen et al., 2018).
OBJECTIVES = ("elbo", "iwae", "tcvae")
#: p(z): N(0, I); the VampPrior (a mixture over learned pseudo-inputs passed through the
#: encoder; per class in a conditional model); a learned mixture of Gaussians; a learned Gaussian
#: per class (conditional models).
PRIORS = ("standard", "vamp", "mog", "class")
#: Priors whose KL to a diagonal Gaussian posterior has a closed form.
CLOSED_FORM_PRIORS = ("standard", "class")
#: Posterior flows: none, or inverse autoregressive flow steps (Kingma et al., 2016).
FLOWS = ("none", "iaf")
#: Most mixture components or pseudo-inputs a learned prior may have, and most flow steps.
MAX_COMPONENTS = 10_000
MAX_FLOW_STEPS = 64


def default_prior(n_classes: int, engine: str = "torch") -> str:
    """p(z) when none is named: N(0, I) for an unconditional model; for a conditional one the
    VampPrior per class on the torch engine (its samples are the class asked for at any latent
    size, where one Gaussian per class leaves holes its samples fall into: ``benchmarks/
    conditional.py``), or the Gaussian per class on the NumPy engine, whose hand-written backward
    pass has no VampPrior."""
    if not n_classes:
        return "standard"
    return "class" if engine == "numpy" else "vamp"


DEFAULT_FLOW_STEPS = 2
ENGINES = ("torch", "numpy")
OPTIMIZERS = ("adam", "sgd")
BINARIZATIONS = ("none", "threshold", "static", "dynamic")
#: Where a run computes, by name (``cuda`` is the current GPU, ``cuda:N`` GPU N: see
#: :func:`check_device`); ``auto`` is CUDA when PyTorch sees a GPU, else the CPU.
DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
#: Largest GPU index ``cuda:N`` may name.
MAX_CUDA_INDEX = 1023
#: Arithmetic of the networks' forward passes: float32, or bfloat16 autocast (conv model).
PRECISIONS = ("fp32", "bf16")
LR_SCHEDULES = ("decay", "burda")
#: How raw values become model inputs (see :mod:`vaekit.data.scaling`).
SCALINGS = ("auto", "none", "unit", "standardize", "minmax")
IMAGE_MODES = ("auto", "grey", "rgb")
KEEP = ("last", "best")
LOGGERS = ("none", "tensorboard")
#: Whether the training set lives on the engine's device for the run (see
#: ``vaekit.train.loop.hold_on_device``): auto (on a lone CUDA GPU it fits on), yes, no.
DATA_ON_DEVICE = ("auto", "yes", "no")
#: Largest side ``image_size`` may ask for, and the largest validation fraction.
MAX_IMAGE_SIDE = 4096
MAX_VAL_FRACTION = 0.5

#: Widest layer and largest network vaekit agrees to build (guards against typos such as 4e9).
MAX_UNITS = 65_536
MAX_PARAMETERS = 500_000_000
#: Most classes a conditional model may have (labels 0 … MAX_CLASSES − 1).
MAX_CLASSES = 10_000
#: Most values in one input (one example), and most importance samples per example.
MAX_INPUT_VALUES = 50_000_000
MAX_IW_SAMPLES = 10_000
#: Largest seed (NumPy's and torch's generators take any 32-bit seed), and the most epochs (also
#: of patience, and between sample grids), steps between sample grids, and examples per batch.
MAX_SEED = 2**32 - 1
MAX_EPOCHS = 1_000_000
MAX_STEPS = 10**12
MAX_BATCH = 1_000_000


def _shown(value: Any) -> str:
    """``value`` for a message; an integer too long to print in full (Python refuses more than
    4300 digits) by its size."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**30:
        return f"a number of about {int(abs(value).bit_length() * math.log10(2)) + 1:,} digits"
    return repr(value)


def _positive_int(name: str, value: Any, upper: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive whole number, got {_shown(value)}")
    if upper is not None and value > upper:
        raise ConfigError(f"{name} = {_shown(value)} is larger than the limit of {upper}")
    return value


def _whole(name: str, value: Any, low: int, high: int) -> int:
    """``value`` if it is a whole number (not a bool) from ``low`` to ``high``, else a
    ConfigError naming the setting and the range."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(
            f"{name} must be a whole number from {low:,} to {high:,}, got {_shown(value)}"
        )
    return value


def _finite(name: str, value: Any, *, positive: bool = False, nonnegative: bool = False) -> float:
    finite = isinstance(value, float) and math.isfinite(value)
    if isinstance(value, int) and not isinstance(value, bool):
        finite = abs(value) <= sys.float_info.max  # math.isfinite raises for a larger int
    if not finite:
        raise ConfigError(f"{name} must be a finite number, got {_shown(value)}")
    if positive and value <= 0:
        raise ConfigError(f"{name} must be greater than 0, got {value!r}")
    if nonnegative and value < 0:
        raise ConfigError(f"{name} must be 0 or more, got {value!r}")
    return float(value)


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return value


def check_device(device: Any) -> str:
    """``device`` if it is ``auto``, ``cpu``, ``cuda``, ``cuda:N`` (N a whole number from 0 to
    :data:`MAX_CUDA_INDEX`, written without leading zeros) or ``mps``; else a ConfigError. Whether
    the machine has that device is the engine's question (``resolve_device``)."""
    if device in ("auto", "cpu", "cuda", "mps"):
        return device
    index = re.fullmatch(r"cuda:(0|[1-9][0-9]*)", device) if isinstance(device, str) else None
    if index and int(index[1]) <= MAX_CUDA_INDEX:
        return device
    raise ConfigError(
        f"device must be auto, cpu, cuda, cuda:N (N from 0 to {MAX_CUDA_INDEX}) or mps; "
        f"got {device!r}"
    )


def _sizes(name: str, value: Any, *, allow_empty: bool) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{name} must be a list of layer sizes, got {value!r}")
    if not value and not allow_empty:
        raise ConfigError(f"{name} needs at least one size")
    return tuple(_positive_int(f"{name}[{i}]", v, MAX_UNITS) for i, v in enumerate(value))


def _from_dict(cls, data: Any, what: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{what} must be a JSON object, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{what} has unknown setting(s): {', '.join(unknown)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    try:
        return cls(**values)
    except TypeError as exc:  # a value of the wrong kind that validation could not name
        raise ConfigError(f"{what} is invalid: {exc}") from None


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and likelihood of a VAE over inputs of ``input_shape``.

    ``arch="mlp"``: encoder input (D = prod(input_shape)) → ``hidden`` → (mu, logvar) of size
    ``latent_dim``; decoder z → ``decoder_hidden`` (default: ``hidden`` reversed) → D outputs,
    read as Bernoulli logits or as the Gaussian mean f(z).
    ``arch="conv"``: images (C, H, W); the encoder first applies one stride-2 4×4 convolution per
    entry of ``conv_channels`` (each halves H and W), the decoder ends with the mirror-image
    transposed convolutions ("deconvolutions") after a dense projection.
    ``n_classes`` > 0 makes the model conditional: a one-hot label joins the encoder's dense input
    and the decoder's input z.

    ``prior`` is p(z) over the top latent layer (see :data:`PRIORS`; None: :func:`default_prior`,
    the VampPrior per class for a conditional model, else ``standard``), with ``prior_components``
    pseudo-inputs (``vamp``; dealt to the classes in turn in a conditional model) or mixture
    components (``mog``). ``top_latent_dim`` > 0 adds a second stochastic layer z2 above z1 (Burda
    et al., 2015): q(z1|x) q(z2|z1), p(z2) p(z1|z2) p(x|z1), the networks between the layers having
    ``top_hidden`` units. ``flow="iaf"`` pushes z ~ q(z|x) through ``flow_steps`` (None: 2) inverse
    autoregressive flow steps (MADE networks of ``flow_hidden`` units, conditioned on the encoder's
    last hidden layer); log q(z|x) includes the log-determinant. ``encoder_module`` /
    ``decoder_module`` name your own ``torch.nn.Module`` classes as ``"package.module:ClassName"``
    (see :mod:`vaekit.model.custom_networks` for the interface); they replace vaekit's encoder or
    decoder and are rebuilt from that path when a run is loaded.

    ``sigma`` is the Gaussian standard deviation (fixed, or the starting value when
    ``learn_sigma`` is ``scalar`` or ``per-dim``). The training objective is
    recon + beta·KL (beta = 1: the negative ELBO), with the KL of each latent dimension (its
    batch mean) held at least ``free_bits`` nats; or, with ``objective="iwae"``, the negative
    importance-weighted bound with ``iw_samples`` samples per example; or, with
    ``objective="tcvae"``, recon + KL + (beta − 1)·TC (β-TCVAE: beta weighs only the total
    correlation TC of the aggregate posterior, :func:`vaekit.model.objectives.total_correlation`).
    """

    input_shape: tuple[int, ...] = (1, 28, 28)
    hidden: tuple[int, ...] = (400,)
    latent_dim: int = 20
    decoder_hidden: tuple[int, ...] | None = None
    activation: str = "relu"
    likelihood: str = "bernoulli"
    sigma: float = 1.0
    learn_sigma: str = "fixed"
    beta: float = 1.0
    arch: str = "mlp"
    conv_channels: tuple[int, ...] = (32, 64)
    n_classes: int = 0
    free_bits: float = 0.0
    objective: str = "elbo"
    iw_samples: int = 1
    prior: str | None = None
    prior_components: int = 500
    top_latent_dim: int = 0
    top_hidden: tuple[int, ...] = (100, 100)
    flow: str = "none"
    flow_steps: int | None = None
    flow_hidden: tuple[int, ...] = (256, 256)
    encoder_module: str | None = None
    decoder_module: str | None = None

    def __post_init__(self) -> None:
        shape = _sizes("input_shape", self.input_shape, allow_empty=False)
        object.__setattr__(self, "input_shape", shape)
        object.__setattr__(self, "hidden", _sizes("hidden", self.hidden, allow_empty=True))
        if self.decoder_hidden is not None:
            sizes = _sizes("decoder_hidden", self.decoder_hidden, allow_empty=True)
            object.__setattr__(self, "decoder_hidden", sizes)
        _positive_int("latent_dim", self.latent_dim, MAX_UNITS)
        _choice("activation", self.activation, ACTIVATIONS)
        _choice("likelihood", self.likelihood, LIKELIHOODS)
        _choice("learn_sigma", self.learn_sigma, SIGMA_MODES)
        object.__setattr__(self, "sigma", _finite("sigma", self.sigma, positive=True))
        object.__setattr__(self, "beta", _finite("beta", self.beta, nonnegative=True))
        if self.learn_sigma != "fixed" and self.likelihood != "gaussian":
            raise ConfigError("learn_sigma applies only to the gaussian likelihood")
        _choice("arch", self.arch, ARCHITECTURES)
        _choice("objective", self.objective, OBJECTIVES)
        channels = _sizes("conv_channels", self.conv_channels, allow_empty=False)
        object.__setattr__(self, "conv_channels", channels)
        _whole("n_classes", self.n_classes, 0, MAX_CLASSES)
        free = _finite("free_bits", self.free_bits, nonnegative=True)
        object.__setattr__(self, "free_bits", free)
        _positive_int("iw_samples", self.iw_samples, MAX_IW_SAMPLES)
        if self.objective != "iwae" and self.iw_samples != 1:
            raise ConfigError("iw_samples applies to the iwae objective; use objective='iwae'")
        self._check_latent_structure()
        if self.arch == "conv":
            scale = 2 ** len(channels)
            if len(shape) != 3 or shape[1] % scale or shape[2] % scale:
                raise ConfigError(
                    f"the conv architecture needs images (C, H, W) with H and W divisible by "
                    f"{scale}; got input shape {shape}"
                )
        if math.prod(shape) > MAX_INPUT_VALUES:
            raise ConfigError(f"input_shape {shape} is too large ({math.prod(shape)} values)")
        if self.parameter_count > MAX_PARAMETERS:
            raise ConfigError(
                f"this model would have {self.parameter_count:,} parameters, "
                f"more than the limit of {MAX_PARAMETERS:,}; use smaller layers"
            )

    def _check_latent_structure(self) -> None:
        """The prior, the second stochastic layer, the flow and your own networks, and which of
        them go together."""
        if self.prior is None:
            object.__setattr__(self, "prior", default_prior(self.n_classes))
        _choice("prior", self.prior, PRIORS)
        _positive_int("prior_components", self.prior_components, MAX_COMPONENTS)
        top = _whole("top_latent_dim", self.top_latent_dim, 0, MAX_UNITS)
        object.__setattr__(
            self, "top_hidden", _sizes("top_hidden", self.top_hidden, allow_empty=True)
        )
        _choice("flow", self.flow, FLOWS)
        if self.flow_steps is None:
            object.__setattr__(self, "flow_steps", DEFAULT_FLOW_STEPS if self.flow != "none" else 0)
        steps = _whole("flow_steps", self.flow_steps, 0, MAX_FLOW_STEPS)
        flow_hidden = _sizes("flow_hidden", self.flow_hidden, allow_empty=False)
        object.__setattr__(self, "flow_hidden", flow_hidden)
        for name in ("encoder_module", "decoder_module"):
            path = getattr(self, name)
            if path is not None and (
                not isinstance(path, str) or not re.fullmatch(r"[\w.]+:[\w.]+", path)
            ):
                raise ConfigError(
                    f"{name} must be an import path 'package.module:ClassName', got {path!r}"
                )
        if self.prior == "class" and not self.n_classes:
            raise ConfigError("the class prior p(z|y) needs a conditional model (labels)")
        if self.prior == "mog" and self.n_classes:
            raise ConfigError(
                "the mog prior is for unconditional models; a conditional model uses prior vamp, "
                "class or standard"
            )
        if self.prior == "vamp" and self.prior_components < self.n_classes:
            raise ConfigError(
                f"a conditional VampPrior needs at least one pseudo-input per class: "
                f"prior_components {self.prior_components} < {self.n_classes} classes"
            )
        if self.flow == "iaf" and steps == 0:
            raise ConfigError("flow iaf needs flow_steps of 1 or more")
        if self.flow == "none" and steps:
            raise ConfigError("flow_steps applies to a flow; use flow='iaf'")
        if top and (self.n_classes or self.flow != "none"):
            raise ConfigError(
                "a second stochastic layer (top_latent_dim) goes with unconditional models "
                "without a flow"
            )
        if self.flow != "none" and self.encoder_module is not None:
            raise ConfigError(
                "a flow is conditioned on vaekit's encoder's last hidden layer; it cannot follow "
                "your own encoder_module"
            )
        custom = self.encoder_module is not None or self.decoder_module is not None
        if custom and (self.n_classes or top):
            raise ConfigError(
                "your own encoder_module or decoder_module goes with unconditional models of "
                "one stochastic layer"
            )
        if self.free_bits and not self.closed_form_kl:
            raise ConfigError(
                "free_bits needs a KL in closed form per latent dimension: prior standard or "
                "class, no flow and one stochastic layer"
            )
        if self.objective == "tcvae" and (self.prior != "standard" or not self.closed_form_kl):
            raise ConfigError(
                "the tcvae objective needs prior standard, no flow and one stochastic layer: its "
                "decomposition of the KL into mutual information, total correlation and "
                "dimension-wise KL holds for a factorised N(0, I) prior and a Gaussian q(z|x)"
            )

    @property
    def closed_form_kl(self) -> bool:
        """Whether KL(q(z|x) ‖ p(z)) has a closed form per latent dimension (the ELBO then uses
        it; otherwise the single-sample estimate log q(z|x) − log p(z))."""
        return self.prior in CLOSED_FORM_PRIORS and self.flow == "none" and not self.top_latent_dim

    @property
    def prior_dim(self) -> int:
        """Size of the latent layer the prior p(z) is over: z2 with two stochastic layers, else
        z."""
        return self.top_latent_dim or self.latent_dim

    @property
    def noise_dim(self) -> int:
        """Standard normal numbers one posterior sample takes: K for z, plus K2 for z2."""
        return self.latent_dim + self.top_latent_dim

    @property
    def encoder_width(self) -> int:
        """Width of the encoder's last hidden layer h (what mu, logvar and a flow read)."""
        return self._encoder_shapes()["encoder.mu.weight"][1]

    @property
    def input_dim(self) -> int:
        """D, the number of values in one input."""
        return math.prod(self.input_shape)

    @property
    def decoder_sizes(self) -> tuple[int, ...]:
        """Hidden sizes of the decoder (the encoder's, reversed, unless given)."""
        if self.decoder_hidden is None:
            return tuple(reversed(self.hidden))
        return self.decoder_hidden

    @property
    def conditional(self) -> bool:
        return self.n_classes > 0

    @property
    def conv_feature_shape(self) -> tuple[int, int, int]:
        """(channels, H, W) after the encoder's convolutions (arch ``conv`` only)."""
        scale = 2 ** len(self.conv_channels)
        return self.conv_channels[-1], self.input_shape[1] // scale, self.input_shape[2] // scale

    @property
    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """Name → shape of every weight, the contract both engines and checkpoints follow.

        Dense weights are stored (out, in), as ``torch.nn.Linear`` does; convolutions
        (out, in, 4, 4) and transposed convolutions (in, out, 4, 4), as torch stores them. Your
        own ``encoder_module`` / ``decoder_module`` contribute the names and shapes of their
        state dicts under ``encoder.`` / ``decoder.`` (read by building them on torch's "meta"
        device, which allocates nothing).
        """
        shapes = {**self._encoder_shapes(), **self._decoder_shapes()}
        if self.learn_sigma == "scalar":
            shapes["decoder.log_sigma"] = (1,)
        elif self.learn_sigma == "per-dim":
            shapes["decoder.log_sigma"] = (self.input_dim,)
        return {**shapes, **self._latent_structure_shapes()}

    def _encoder_shapes(self) -> dict[str, tuple[int, ...]]:
        if self.encoder_module is not None:
            from vaekit.model.custom_networks import module_shapes

            return module_shapes(self, "encoder")
        shapes: dict[str, tuple[int, ...]] = {}
        width = self.input_dim
        if self.arch == "conv":
            channels = self.input_shape[0]
            for i, out in enumerate(self.conv_channels):
                shapes[f"encoder.conv.{i}.weight"] = (out, channels, 4, 4)
                shapes[f"encoder.conv.{i}.bias"] = (out,)
                channels = out
            width = math.prod(self.conv_feature_shape)
        width += self.n_classes
        for i, units in enumerate(self.hidden):
            shapes[f"encoder.hidden.{i}.weight"] = (units, width)
            shapes[f"encoder.hidden.{i}.bias"] = (units,)
            width = units
        for head in ("mu", "logvar"):
            shapes[f"encoder.{head}.weight"] = (self.latent_dim, width)
            shapes[f"encoder.{head}.bias"] = (self.latent_dim,)
        return shapes

    def _decoder_shapes(self) -> dict[str, tuple[int, ...]]:
        if self.decoder_module is not None:
            from vaekit.model.custom_networks import module_shapes

            return module_shapes(self, "decoder")
        shapes: dict[str, tuple[int, ...]] = {}
        width = self.latent_dim + self.n_classes
        for i, units in enumerate(self.decoder_sizes):
            shapes[f"decoder.hidden.{i}.weight"] = (units, width)
            shapes[f"decoder.hidden.{i}.bias"] = (units,)
            width = units
        if self.arch == "conv":
            features = math.prod(self.conv_feature_shape)
            shapes["decoder.project.weight"] = (features, width)
            shapes["decoder.project.bias"] = (features,)
            outs = (*reversed(self.conv_channels[:-1]), self.input_shape[0])
            channels = self.conv_channels[-1]
            for i, out in enumerate(outs):
                shapes[f"decoder.deconv.{i}.weight"] = (channels, out, 4, 4)
                shapes[f"decoder.deconv.{i}.bias"] = (out,)
                channels = out
        else:
            shapes["decoder.out.weight"] = (self.input_dim, width)
            shapes["decoder.out.bias"] = (self.input_dim,)
        return shapes

    def _latent_structure_shapes(self) -> dict[str, tuple[int, ...]]:
        """The learned prior's parameters (``prior.*``), the networks between two stochastic
        layers (``top.encoder.*``: q(z2|z1); ``top.decoder.*``: p(z1|z2)) and the flow's MADE
        networks (``flow.{t}.*``; their masks follow from the sizes and are not stored)."""
        shapes: dict[str, tuple[int, ...]] = {}
        k, c = self.prior_dim, self.prior_components
        if self.prior == "vamp":
            shapes["prior.pseudo_inputs"] = (c, self.input_dim)
            if self.n_classes:
                shapes["prior.logits"] = (c,)
        elif self.prior == "mog":
            shapes.update({"prior.means": (c, k), "prior.logvars": (c, k), "prior.logits": (c,)})
        elif self.prior == "class":
            shapes.update(
                {"prior.means": (self.n_classes, k), "prior.logvars": (self.n_classes, k)}
            )
        if self.top_latent_dim:
            for net, size_in, size_out, hidden in (
                ("top.encoder", self.latent_dim, self.top_latent_dim, self.top_hidden),
                ("top.decoder", self.top_latent_dim, self.latent_dim, self.top_hidden[::-1]),
            ):
                width = size_in
                for i, units in enumerate(hidden):
                    shapes[f"{net}.hidden.{i}.weight"] = (units, width)
                    shapes[f"{net}.hidden.{i}.bias"] = (units,)
                    width = units
                for head in ("mu", "logvar"):
                    shapes[f"{net}.{head}.weight"] = (size_out, width)
                    shapes[f"{net}.{head}.bias"] = (size_out,)
        if self.flow == "iaf":
            context = self.encoder_width
            for t in range(self.flow_steps):
                width = self.latent_dim
                for i, units in enumerate(self.flow_hidden):
                    shapes[f"flow.{t}.hidden.{i}.weight"] = (units, width)
                    shapes[f"flow.{t}.hidden.{i}.bias"] = (units,)
                    if i == 0:
                        shapes[f"flow.{t}.context.weight"] = (units, context)
                    width = units
                for head in ("shift", "gate"):
                    shapes[f"flow.{t}.{head}.weight"] = (self.latent_dim, width)
                    shapes[f"flow.{t}.{head}.bias"] = (self.latent_dim,)
        return shapes

    @property
    def parameter_count(self) -> int:
        return sum(math.prod(s) for s in self.parameter_shapes.values())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> ModelConfig:
        return _from_dict(cls, data, "model config")


@dataclass(frozen=True)
class TrainConfig:
    """How to train: data, engine, optimizer and schedule.

    ``data`` is a data set name or a data file or folder; ``data_dir`` the directory whose
    ``<name>/`` holds a named set (None: ``$VAEKIT_DATA_DIR``, else the user cache; see
    :mod:`vaekit.data.datasets`). The command line stores both paths absolute, so that a run
    finds its data from any working directory; relative ones (older runs) still load, read
    relative to the working directory.
    ``kl_warmup`` is a number of epochs over which the KL weight rises linearly from 0 to
    ``beta``; 0 disables warm-up (for the tcvae objective the rising weight is the total
    correlation's: recon + KL + (β_t − 1)·TC). With ``lr_schedule="decay"`` epoch e (from 1)
    trains with learning rate ``lr · lr_decay^(e−1)``; ``"burda"`` is Burda et al.'s schedule
    (``lr · 10^(−i/7)`` for 3^i epochs, i = 0…7). A sample grid of ``sample_count`` images is
    drawn every ``sample_every`` epochs and, if ``sample_every_steps`` > 0, every that many steps.
    ``binarize`` is ``none`` (grey levels in [0,1]), ``threshold``
    (x > 0.5), ``static`` (one fixed Bernoulli sample of each image) or ``dynamic`` (a fresh
    Bernoulli sample of every image each time it is seen).

    ``scale`` turns raw values into model inputs (see :mod:`vaekit.data.scaling`; the fitted
    statistics are stored in the run). ``image_size`` (H, W) resizes, then centre-crops, every
    image read from files; ``image_mode`` reads them as ``grey`` (1 channel) or ``rgb`` (3),
    ``auto``: RGB when any image of the folder has colour. ``val_fraction`` of the training
    examples (a seeded draw) is held out to score every epoch; None: 0.1 for data without a test
    split, 0 for the named sets, whose test split is the held-out data. ``keep="best"`` also
    keeps the weights of the epoch with the best held-out −ELBO; ``patience`` > 0 stops training
    once that many epochs in a row did not improve it. ``logger`` ``tensorboard`` also writes the
    run's scalars, figures and settings as TensorBoard event files (``RUN/tensorboard/``).
    ``data_on_device`` ``yes`` keeps the in-memory training set on the torch engine's device
    for the run: batches are sliced and dynamically binarized there, and steps never wait for
    the host; ``auto`` does so on a CUDA GPU outside torchrun when the data fit in half its
    free memory, ``no`` never.
    """

    data: str = "mnist-small"
    data_dir: str | None = None
    binarize: str = "none"
    engine: str = "torch"
    device: str = "auto"
    precision: str = "fp32"
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    lr_decay: float = 1.0
    lr_schedule: str = "decay"
    optimizer: str = "adam"
    momentum: float = 0.0
    adam_eps: float = 1e-8
    kl_warmup: float = 0.0
    seed: int = 0
    sample_every: int = 1
    sample_every_steps: int = 0
    sample_count: int = 64
    scale: str = "auto"
    image_size: tuple[int, int] | None = None
    image_mode: str = "auto"
    val_fraction: float | None = None
    keep: str = "last"
    patience: int = 0
    logger: str = "none"
    data_on_device: str = "auto"

    def __post_init__(self) -> None:
        if not isinstance(self.data, str) or not self.data:
            raise ConfigError("data must name a data set or a file")
        if self.data_dir is not None and (not isinstance(self.data_dir, str) or not self.data_dir):
            raise ConfigError(f"data_dir must be a directory path or null, got {self.data_dir!r}")
        _choice("binarize", self.binarize, BINARIZATIONS)
        _choice("engine", self.engine, ENGINES)
        check_device(self.device)
        _choice("precision", self.precision, PRECISIONS)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _positive_int("epochs", self.epochs, MAX_EPOCHS)
        _positive_int("batch_size", self.batch_size, MAX_BATCH)
        _positive_int("sample_every", self.sample_every, MAX_EPOCHS)
        _positive_int("sample_count", self.sample_count, 10_000)
        _whole("sample_every_steps", self.sample_every_steps, 0, MAX_STEPS)
        _choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        object.__setattr__(self, "adam_eps", _finite("adam_eps", self.adam_eps, positive=True))
        object.__setattr__(self, "lr", _finite("lr", self.lr, positive=True))
        object.__setattr__(self, "lr_decay", _finite("lr_decay", self.lr_decay, positive=True))
        if self.lr_decay > 1:
            raise ConfigError(f"lr_decay must be in (0, 1], got {self.lr_decay}")
        object.__setattr__(self, "momentum", _finite("momentum", self.momentum, nonnegative=True))
        if self.momentum >= 1:
            raise ConfigError(f"momentum must be below 1, got {self.momentum}")
        warmup = _finite("kl_warmup", self.kl_warmup, nonnegative=True)
        object.__setattr__(self, "kl_warmup", warmup)
        _whole("seed", self.seed, 0, MAX_SEED)
        _choice("scale", self.scale, SCALINGS)
        _choice("image_mode", self.image_mode, IMAGE_MODES)
        _choice("keep", self.keep, KEEP)
        _choice("logger", self.logger, LOGGERS)
        _choice("data_on_device", self.data_on_device, DATA_ON_DEVICE)
        if self.image_size is not None:
            if not isinstance(self.image_size, (list, tuple)) or len(self.image_size) != 2:
                raise ConfigError(f"image_size must be two sides (H, W), got {self.image_size!r}")
            size = tuple(
                _positive_int(f"image_size[{i}]", v, MAX_IMAGE_SIDE)
                for i, v in enumerate(self.image_size)
            )
            object.__setattr__(self, "image_size", size)
        if self.val_fraction is not None:
            fraction = _finite("val_fraction", self.val_fraction, nonnegative=True)
            if fraction > MAX_VAL_FRACTION:
                raise ConfigError(
                    f"val_fraction must be at most {MAX_VAL_FRACTION}, got {self.val_fraction}"
                )
            object.__setattr__(self, "val_fraction", fraction)
        _whole("patience", self.patience, 0, MAX_EPOCHS)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> TrainConfig:
        return _from_dict(cls, data, "training config")
