"""Model and training settings: frozen dataclasses, one line of help and one rule per field
(:mod:`vaekit.config.rules`), checked when built, with a JSON round-trip. :class:`ModelConfig`
is the one source of the architecture and the likelihood (both engines build its weights, named
by :mod:`vaekit.model.parameters`); :class:`TrainConfig` holds everything else a run needs, so
that its ``config.json`` reproduces it. The command line's flags and the estimator's keyword
parameters are made from these fields: their help, defaults and bounds are written here once.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from vaekit.config.limits import (
    ACTIVATIONS,
    ARCHITECTURES,
    AUTO,
    AUTO_MAX_EPOCHS,
    AUTO_MAX_MINUTES,
    AUTO_PATIENCE,
    BINARIZATIONS,
    CLOSED_FORM_PRIORS,
    DATA_ON_DEVICE,
    DATASET_NAMES,
    DEFAULT_EPOCHS,
    DEFAULT_FLOW_STEPS,
    ENGINES,
    FLOWS,
    IMAGE_MODES,
    KEEP,
    LIKELIHOODS,
    LOGGERS,
    LR_SCHEDULES,
    MAX_BATCH,
    MAX_CLASSES,
    MAX_COMPONENTS,
    MAX_EPOCHS,
    MAX_FLOW_STEPS,
    MAX_IMAGE_SIDE,
    MAX_INPUT_VALUES,
    MAX_IW_SAMPLES,
    MAX_MINUTES,
    MAX_SAMPLES,
    MAX_SEED,
    MAX_STEPS,
    MAX_THREADS,
    MAX_UNITS,
    MAX_VAL_FRACTION,
    OBJECTIVES,
    OPTIMIZERS,
    PRECISIONS,
    PRIORS,
    SCALINGS,
    SIGMA_MODES,
)
from vaekit.config.rules import SIZES, Rule, check_fields, choice, from_dict, setting, whole
from vaekit.errors import ConfigError

MODEL, TRAINING, DATA = "model", "training", "data"  # the groups of ``vaekit train --help``


def default_prior(n_classes: int, engine: str = ENGINES[0]) -> str:
    """p(z) when none is named: N(0, I) for an unconditional model; for a conditional one the
    VampPrior per class on the torch engine (its samples are the class asked for at any latent
    size, where one Gaussian per class leaves holes its samples fall into: ``benchmarks/
    conditional.py``), or the Gaussian per class on the NumPy engine, whose hand-written backward
    pass has no VampPrior. A ModelConfig alone is for the default engine, torch; the command line
    and the estimator, which know the engine, resolve it with theirs
    (:func:`vaekit.data.pipeline.model_config`)."""
    if not n_classes:
        return "standard"
    return "class" if engine == "numpy" else "vamp"


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and likelihood of a VAE over inputs of ``input_shape``.

    ``arch="mlp"``: encoder input (D = prod(input_shape)) → ``hidden`` → (mu, logvar) of size
    ``latent_dim``; decoder z → ``decoder_hidden`` (default: ``hidden`` reversed) → D outputs,
    read as Bernoulli logits or as the Gaussian mean f(z). ``arch="conv"``: images (C, H, W); the
    encoder first applies one stride-2 4×4 convolution per entry of ``conv_channels`` (each halves
    H and W), the decoder ends with the mirror-image transposed convolutions after a dense
    projection. ``n_classes`` > 0 makes the model conditional: a one-hot label joins the encoder's
    dense input and the decoder's input z.

    ``prior`` is p(z) over the top latent layer, with ``prior_components`` pseudo-inputs
    (``vamp``; dealt to the classes in turn in a conditional model) or mixture components
    (``mog``). ``top_latent_dim`` > 0 adds a second stochastic layer z2 above z1 (Burda et al.,
    2015): q(z1|x) q(z2|z1), p(z2) p(z1|z2) p(x|z1). ``flow="iaf"`` pushes z ~ q(z|x) through
    inverse autoregressive flow steps conditioned on the encoder's last hidden layer; log q(z|x)
    includes the log-determinant. ``encoder_module`` / ``decoder_module`` name your own
    ``torch.nn.Module`` classes (:mod:`vaekit.model.custom_networks`).

    The training objective is recon + beta·KL (beta = 1: the negative ELBO), with the KL of each
    latent dimension (its batch mean) held at least ``free_bits`` nats; or the negative
    importance-weighted bound (``iwae``, ``iw_samples`` samples); or β-TCVAE's recon + KL +
    (beta − 1)·TC (:func:`vaekit.model.objectives.total_correlation`).
    """

    input_shape: tuple[int, ...] = setting(
        (1, 28, 28),
        "shape of one input: (D,) or (C, H, W), from the data",
        Rule("sizes"),
        flag=None,
    )
    hidden: tuple[int, ...] = setting(
        (400,), "encoder hidden layer sizes", SIZES, metavar="UNITS", group=MODEL
    )
    latent_dim: int = setting(20, "size of z", whole(1, MAX_UNITS), group=MODEL)
    decoder_hidden: tuple[int, ...] | None = setting(
        None,
        "decoder hidden sizes (default: the encoder's, reversed)",
        Rule("sizes", empty=True, optional=True),
        metavar="UNITS",
        group=MODEL,
    )
    activation: str = setting(
        "relu",
        "hidden activation, or gated: gated dense layers (W·h + b) ⊙ sigmoid(V·h + c) (torch "
        "engine, MLP)",
        choice(*ACTIVATIONS),
        group=MODEL,
    )
    likelihood: str = setting("bernoulli", "p(x|z)", choice(*LIKELIHOODS), group=MODEL)
    sigma: float = setting(
        1.0, "Gaussian σ, fixed or initial", Rule("number", 0, above=True), group=MODEL
    )
    learn_sigma: str = setting(
        "fixed",
        "σ: fixed, learned (scalar or per-dim) or calibrated (each step sets one σ to the "
        "batch's maximum-likelihood value, Rybkin et al. 2021)",
        choice(*SIGMA_MODES),
        group=MODEL,
    )
    beta: float = setting(
        1.0,
        "KL weight β (1: the true ELBO); tcvae: the TC weight",
        Rule("number", 0),
        group=MODEL,
    )
    arch: str = setting(
        "mlp", "mlp or conv (deconvolution decoder)", choice(*ARCHITECTURES), group=MODEL
    )
    conv_channels: tuple[int, ...] = setting(
        (32, 64), "conv channels", Rule("sizes"), metavar="C", group=MODEL
    )
    n_classes: int = setting(
        0,
        "classes of a conditional model (0: unconditional), from the data",
        whole(0, MAX_CLASSES),
        flag=None,
    )
    free_bits: float = setting(
        0.0,
        "minimum KL per latent dimension, nats",
        Rule("number", 0),
        metavar="NATS",
        group=MODEL,
    )
    objective: str = setting(
        "elbo",
        "elbo, iwae, or tcvae (β-TCVAE: --beta weighs only the total correlation)",
        choice(*OBJECTIVES),
        group=MODEL,
    )
    iw_samples: int = setting(
        1,
        "samples of the iwae objective",
        whole(1, MAX_IW_SAMPLES),
        flag="--k",
        metavar="K",
        group=MODEL,
    )
    prior: str | None = setting(
        None,
        "p(z): standard N(0, I), vamp (VampPrior; per class with --conditional, its default on "
        "the torch engine), mog (learned mixture of Gaussians) or class (a learned Gaussian per "
        "class; the default of --conditional on the numpy engine) (default standard)",
        Rule("choice", choices=PRIORS, optional=True),
        group=MODEL,
    )
    prior_components: int = setting(
        500,
        "pseudo-inputs (vamp) or mixture components (mog)",
        whole(1, MAX_COMPONENTS),
        metavar="C",
        group=MODEL,
    )
    top_latent_dim: int = setting(
        0,
        "size of a second stochastic layer z2 (0: none)",
        whole(0, MAX_UNITS),
        metavar="K2",
        group=MODEL,
    )
    top_hidden: tuple[int, ...] = setting(
        (100, 100), "hidden sizes between z1 and z2", SIZES, metavar="UNITS", group=MODEL
    )
    flow: str = setting("none", "none or iaf: a flow on q(z|x)", choice(*FLOWS), group=MODEL)
    flow_steps: int | None = setting(
        None,
        f"flow steps (default {DEFAULT_FLOW_STEPS} with a flow)",
        Rule("whole", 0, MAX_FLOW_STEPS, optional=True),
        metavar="N",
        group=MODEL,
    )
    flow_hidden: tuple[int, ...] = setting(
        (256, 256),
        "hidden sizes of each flow step's MADE",
        Rule("sizes"),
        metavar="UNITS",
        group=MODEL,
    )
    encoder_module: str | None = setting(
        None,
        "your own torch.nn.Module encoder, by import path (see docs/custom-networks.md)",
        Rule("module", optional=True),
        metavar="MODULE:CLASS",
        group=MODEL,
    )
    decoder_module: str | None = setting(
        None,
        "your own torch.nn.Module decoder, by import path",
        Rule("module", optional=True),
        metavar="MODULE:CLASS",
        group=MODEL,
    )

    def __post_init__(self) -> None:
        check_fields(self)
        if self.prior is None:
            object.__setattr__(self, "prior", default_prior(self.n_classes))
        if self.flow_steps is None:
            steps = DEFAULT_FLOW_STEPS if self.flow != "none" else 0
            object.__setattr__(self, "flow_steps", steps)
        self._check_likelihood_and_objective()
        self._check_latent_structure()
        self._check_architecture()

    def _check_likelihood_and_objective(self) -> None:
        if self.learn_sigma != "fixed" and self.likelihood != "gaussian":
            raise ConfigError("learn_sigma applies only to the gaussian likelihood")
        if self.objective != "iwae" and self.iw_samples != 1:
            raise ConfigError("iw_samples applies to the iwae objective; use objective='iwae'")
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

    def _check_latent_structure(self) -> None:
        """Which priors, second layers, flows and networks of your own go together."""
        custom = self.encoder_module is not None or self.decoder_module is not None
        refusals = (
            (
                self.prior == "class" and not self.n_classes,
                "the class prior p(z|y) needs a conditional model (labels)",
            ),
            (
                self.prior == "mog" and self.n_classes,
                "the mog prior is for unconditional models; a conditional model uses prior "
                "vamp, class or standard",
            ),
            (
                self.prior == "vamp" and self.prior_components < self.n_classes,
                f"a conditional VampPrior needs at least one pseudo-input per class: "
                f"prior_components {self.prior_components} < {self.n_classes} classes",
            ),
            (self.flow == "iaf" and not self.flow_steps, "flow iaf needs flow_steps of 1 or more"),
            (
                self.flow == "none" and self.flow_steps,
                "flow_steps applies to a flow; use flow='iaf'",
            ),
            (
                self.top_latent_dim and (self.n_classes or self.flow != "none"),
                "a second stochastic layer (top_latent_dim) goes with unconditional models "
                "without a flow",
            ),
            (
                self.flow != "none" and self.encoder_module is not None,
                "a flow is conditioned on vaekit's encoder's last hidden layer; it cannot follow "
                "your own encoder_module",
            ),
            (
                custom and (self.n_classes or self.top_latent_dim),
                "your own encoder_module or decoder_module goes with unconditional models of one "
                "stochastic layer",
            ),
        )
        for refused, why in refusals:
            if refused:
                raise ConfigError(why)

    def _check_architecture(self) -> None:
        """The conv architecture's images and activations; an input of a size vaekit takes."""
        shape = self.input_shape
        if self.arch == "conv":
            if self.activation == "gated":
                raise ConfigError("gated dense layers are for the MLP architecture, not conv")
            scale = 2 ** len(self.conv_channels)
            if len(shape) != 3 or shape[1] % scale or shape[2] % scale:
                raise ConfigError(
                    f"the conv architecture needs images (C, H, W) with H and W divisible by "
                    f"{scale}; got input shape {shape}"
                )
        if math.prod(shape) > MAX_INPUT_VALUES:
            raise ConfigError(f"input_shape {shape} is too large ({math.prod(shape)} values)")

    @property
    def closed_form_kl(self) -> bool:
        """Whether KL(q(z|x) ‖ p(z)) has a closed form per latent dimension (which the ELBO uses;
        else the single-sample estimate log q(z|x) − log p(z))."""
        return self.prior in CLOSED_FORM_PRIORS and self.flow == "none" and not self.top_latent_dim

    @property
    def prior_dim(self) -> int:
        """Size of the layer p(z) is over: z2 with two stochastic layers, else z."""
        return self.top_latent_dim or self.latent_dim

    @property
    def noise_dim(self) -> int:
        """Standard normal numbers one posterior sample takes: K for z, plus K2 for z2."""
        return self.latent_dim + self.top_latent_dim

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
    def log_sigma_shape(self) -> tuple[int, ...] | None:
        """Shape of the Gaussian's stored log σ: (1,) ``scalar`` or ``calibrated``, (D,)
        ``per-dim``, None for a fixed σ."""
        shapes = {"scalar": (1,), "calibrated": (1,), "per-dim": (self.input_dim,)}
        return shapes.get(self.learn_sigma)

    @property
    def encoder_width(self) -> int:
        """Width of vaekit's encoder's last hidden layer h (what mu, logvar and a flow read):
        its last hidden size, else its dense input (the flattened features and the label)."""
        if self.hidden:
            return self.hidden[-1]
        features = math.prod(self.conv_feature_shape) if self.arch == "conv" else self.input_dim
        return features + self.n_classes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> ModelConfig:
        return from_dict(cls, data, "model config")


@dataclass(frozen=True)
class TrainConfig:
    """How to train: data, engine, optimizer and schedule.

    ``data`` and ``data_dir`` are stored absolute by the command line, so that a run finds its
    data from any working directory (relative ones, of older runs, are read from the working
    directory). With ``lr_schedule="decay"`` epoch e (from 1) trains with learning rate
    ``lr · lr_decay^(e−1)``; ``"burda"`` is Burda et al.'s schedule (``lr · 10^(−i/7)`` for 3^i
    epochs, i = 0…7). ``binarize``: ``none`` (grey levels in [0, 1]), ``threshold`` (x > 0.5),
    ``static`` (one fixed Bernoulli sample of each image) or ``dynamic`` (a fresh one each time
    an image is seen). ``val_fraction`` None holds out 0.1 of data without a test split and
    nothing of the named sets, whose test split is the held-out data.
    """

    data: str = setting(
        "mnist-small",
        "mnist, fashion-mnist, mnist-small, or a .npy/.npz/.csv/image folder",
        Rule("text"),
        flag=None,
    )
    data_dir: str | None = setting(
        None,
        "the directory DIR whose mnist/ or fashion-mnist/ holds the data set, only read "
        "(default $VAEKIT_DATA_DIR, else the user cache, the one place vaekit downloads to); "
        "the run stores it; with --resume, where the run's data set is now",
        Rule("text", optional=True),
        metavar="DIR",
        group=TRAINING,
    )
    binarize: str = setting(
        "none",
        "none (grey levels), threshold, static or dynamic",
        choice(*BINARIZATIONS),
        group=TRAINING,
    )
    engine: str = setting("torch", "torch or numpy", choice(*ENGINES), group=TRAINING)
    device: str = setting(
        "auto",
        "auto (cuda when PyTorch sees a GPU, else cpu), cpu, cuda, cuda:N or mps",
        Rule("device"),
        group=TRAINING,
    )
    precision: str = setting(
        "fp32",
        "fp32 or bf16: bfloat16 autocast for --arch conv, on cpu or cuda",
        choice(*PRECISIONS),
        group=TRAINING,
    )
    epochs: int | str | None = setting(
        None,
        f"number of epochs, or {AUTO}: until the held-out -ELBO has not improved for --patience "
        f"epochs (default {AUTO_PATIENCE}), keeping the best weights, at most "
        f"{AUTO_MAX_EPOCHS:,} epochs and --max-minutes (default {AUTO_MAX_MINUTES:g}) "
        f"(default {AUTO} for your own data, {DEFAULT_EPOCHS} for the named data sets)",
        Rule("whole", 1, MAX_EPOCHS, choices=(AUTO,), optional=True),
        metavar="N|auto",
        group=TRAINING,
    )
    batch_size: int = setting(128, "examples per step", whole(1, MAX_BATCH), group=TRAINING)
    lr: float = setting(1e-3, "learning rate", Rule("number", 0, above=True), group=TRAINING)
    lr_decay: float = setting(
        1.0,
        "multiply the rate by GAMMA every epoch",
        Rule("number", 0, 1, above=True),
        metavar="GAMMA",
        group=TRAINING,
    )
    lr_schedule: str = setting("decay", "decay or burda", choice(*LR_SCHEDULES), group=TRAINING)
    optimizer: str = setting("adam", "adam or sgd", choice(*OPTIMIZERS), group=TRAINING)
    momentum: float = setting(0.0, "SGD momentum", Rule("number", 0, 1, below=True), group=TRAINING)
    adam_eps: float = setting(
        1e-8, "Adam's ε", Rule("number", 0, above=True), metavar="EPS", group=TRAINING
    )
    kl_warmup: float = setting(
        0.0,
        "raise the KL weight linearly from 0 to β over EPOCHS",
        Rule("number", 0),
        metavar="EPOCHS",
        group=TRAINING,
    )
    seed: int = setting(0, "random seed", whole(0, MAX_SEED), group=TRAINING)
    sample_every: int = setting(
        1,
        "write a sample grid every N epochs",
        whole(1, MAX_EPOCHS),
        metavar="N",
        group=TRAINING,
    )
    sample_every_steps: int = setting(
        0,
        "also write one every N steps (0: never)",
        whole(0, MAX_STEPS),
        metavar="N",
        group=TRAINING,
    )
    sample_count: int = setting(
        64, "samples per grid", whole(1, MAX_SAMPLES), metavar="N", group=TRAINING
    )
    scale: str = setting(
        "auto",
        "how raw values become inputs, fitted on the training part and stored in the run: auto "
        "(/255 for 8-bit data and images, else none), none, unit (/255), standardize or minmax "
        "(per feature)",
        choice(*SCALINGS),
        group=DATA,
    )
    image_size: tuple[int, int] | None = setting(
        None,
        "resize every image to cover H×W, then crop its centre (default: images of one size)",
        Rule("pair", 1, MAX_IMAGE_SIDE, optional=True),
        metavar=("H", "W"),
        group=DATA,
    )
    image_mode: str = setting(
        "auto",
        "read images as grey or rgb (auto: rgb when any image has colour)",
        choice(*IMAGE_MODES),
        group=DATA,
    )
    val_fraction: float | None = setting(
        None,
        f"hold out this share (0 to {MAX_VAL_FRACTION}, seeded) of the training examples to "
        "score every epoch (default 0.1 for data without a test split, else 0)",
        Rule("number", 0, MAX_VAL_FRACTION, optional=True),
        metavar="F",
        group=DATA,
    )
    keep: str | None = setting(
        None,
        "last: the last epoch's checkpoint; best: also the weights of the best held-out "
        "-ELBO (best.safetensors), which commands then use unless --checkpoint last "
        f"(default best with --epochs {AUTO}, else last)",
        Rule("choice", choices=KEEP, optional=True),
        group=DATA,
    )
    patience: int | None = setting(
        None,
        "stop when the held-out -ELBO has not improved for N epochs (0: never; default "
        f"{AUTO_PATIENCE} with --epochs {AUTO}, else 0)",
        Rule("whole", 0, MAX_EPOCHS, optional=True),
        metavar="N",
        group=DATA,
    )
    max_minutes: float | None = setting(
        None,
        "stop after the first epoch that ends past M minutes of training (0: after one epoch), "
        "the one stop that depends on the machine's speed (default "
        f"{AUTO_MAX_MINUTES:g} with --epochs {AUTO}, else none)",
        Rule("number", 0, MAX_MINUTES, optional=True),
        metavar="M",
        group=TRAINING,
    )
    logger: str = setting(
        "none",
        "none (metrics.jsonl is the record) or tensorboard: also TensorBoard event files in "
        "RUN/tensorboard (the tensorboard extra)",
        choice(*LOGGERS),
        group=TRAINING,
    )
    threads: int | None = setting(
        1,
        "CPU threads of the products, kept in the run so that a resume sums alike (more pay only "
        "on an idle machine: docs/performance.md; a run from before had one per core)",
        Rule("whole", 1, MAX_THREADS, optional=True),
        metavar="N",
        group=TRAINING,
    )
    data_on_device: str = setting(
        "auto",
        "keep the training set on the torch engine's device, batches sliced and binarized "
        "there with no per-step sync: auto (on a lone CUDA GPU when it fits in half the free "
        "memory), yes or no",
        choice(*DATA_ON_DEVICE),
        group=TRAINING,
    )

    def __post_init__(self) -> None:
        check_fields(self)
        self._resolve_stopping()

    def _resolve_stopping(self) -> None:
        """Fill in the defaults that follow ``epochs``, then refuse what auto cannot do.

        ``epochs`` None is ``auto`` for your own data (a file, a folder, an array) that holds
        out examples, and DEFAULT_EPOCHS for the named data sets, whose protocols fix their
        epochs, and for data trained whole (``val_fraction`` 0), which has no held-out score
        to follow. With ``auto``: ``keep`` best, ``patience`` AUTO_PATIENCE and
        ``max_minutes`` AUTO_MAX_MINUTES unless given; otherwise last, 0 (never) and None (no
        time cap). The resolved values are what a run's config.json records."""
        if self.epochs is None:
            own = self.data not in DATASET_NAMES and self.val_fraction != 0
            object.__setattr__(self, "epochs", AUTO if own else DEFAULT_EPOCHS)
        auto = self.auto
        defaults = {
            "keep": "best" if auto else "last",
            "patience": AUTO_PATIENCE if auto else 0,
            "max_minutes": AUTO_MAX_MINUTES if auto else None,
        }
        for name, value in defaults.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        if auto and self.keep != "best":
            raise ConfigError(
                f"epochs {AUTO} keeps the weights of the best held-out -ELBO, so keep must be "
                f"best, not {self.keep!r}; leave keep out or give a number of epochs"
            )
        if auto and not self.patience:
            raise ConfigError(
                f"epochs {AUTO} stops when the held-out -ELBO has not improved for patience "
                "epochs, so patience must be 1 or more, not 0"
            )

    @property
    def auto(self) -> bool:
        """Whether the run trains until its held-out −ELBO stops improving (``epochs`` auto)."""
        return self.epochs == AUTO

    @property
    def epoch_limit(self) -> int:
        """The most epochs the run trains: ``epochs``, or AUTO_MAX_EPOCHS for ``auto``."""
        return AUTO_MAX_EPOCHS if self.auto else self.epochs

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> TrainConfig:
        return from_dict(cls, data, "training config")
