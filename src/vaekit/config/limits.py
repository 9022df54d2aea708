"""What each setting may be: the choices of the settings that name one, and the bounds of the
numbers, roomy for any real use and tight enough that a typo (10**9 for 10) is refused at once
instead of running for hours or exhausting memory."""

from __future__ import annotations

#: Hidden activations applied to each unit, act(W·h + b): both engines, any architecture.
POINTWISE_ACTIVATIONS = ("relu", "elu", "tanh", "sigmoid", "softplus", "leaky_relu")
#: ... and ``gated``, gated dense layers (W·h + b) ⊙ sigmoid(V·h + c) (Dauphin et al., 2017, as
#: Tomczak & Welling, 2018 use them): the torch engine's MLP layers only.
ACTIVATIONS = (*POINTWISE_ACTIVATIONS, "gated")
#: p(x|z): the names of the likelihoods that vaekit.model.objectives implements (its table
#: LIKELIHOODS has one entry for each).
LIKELIHOODS = ("bernoulli", "gaussian")
#: How the Gaussian's σ is found: fixed, learned by gradient (one σ, or one per dimension), or
#: calibrated (each training step sets it to the batch's maximum-likelihood value).
SIGMA_MODES = ("fixed", "scalar", "per-dim", "calibrated")
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
DEFAULT_FLOW_STEPS = 2
ENGINES = ("torch", "numpy")
OPTIMIZERS = ("adam", "sgd")
BINARIZATIONS = ("none", "threshold", "static", "dynamic")
#: Where a run computes, by name (``cuda`` is the current GPU, ``cuda:N`` GPU N: see
#: vaekit.config.rules.check_device); ``auto`` is CUDA when PyTorch sees a GPU, else the CPU.
DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
#: Arithmetic of the networks' forward passes: float32, or bfloat16 autocast (conv model).
PRECISIONS = ("fp32", "bf16")
LR_SCHEDULES = ("decay", "burda")
#: How raw values become model inputs (see vaekit.data.scaling).
SCALINGS = ("auto", "none", "unit", "standardize", "minmax")
IMAGE_MODES = ("auto", "grey", "rgb")
KEEP = ("last", "best")
#: ``epochs`` that trains until the held-out −ELBO stops improving (see TrainConfig).
AUTO = "auto"
LOGGERS = ("none", "tensorboard")
#: Whether the training set lives on the engine's device for the run (see
#: vaekit.train.loop.data_on_device): auto (on a lone CUDA GPU it fits on), yes, no.
DATA_ON_DEVICE = ("auto", "yes", "no")

#: Largest GPU index ``cuda:N`` may name.
MAX_CUDA_INDEX = 1023
#: Widest layer, and the largest network vaekit agrees to build (guards against typos such as
#: 4e9).
MAX_UNITS = 65_536
MAX_PARAMETERS = 500_000_000
#: Most classes a conditional model may have (labels 0 … MAX_CLASSES − 1).
MAX_CLASSES = 10_000
#: Most values in one input (one example), and most importance samples per example.
MAX_INPUT_VALUES = 50_000_000
MAX_IW_SAMPLES = 10_000
#: Most mixture components or pseudo-inputs a learned prior may have, and most flow steps.
MAX_COMPONENTS = 10_000
MAX_FLOW_STEPS = 64
#: Largest seed (NumPy's and torch's generators take any 32-bit seed), and the most epochs (also
#: of patience, and between sample grids), steps between sample grids, examples per batch and
#: samples per grid.
MAX_SEED = 2**32 - 1
MAX_EPOCHS = 1_000_000
#: Longest time cap (``max_minutes``): a year.
MAX_MINUTES = 525_600
MAX_STEPS = 10**12
MAX_BATCH = 1_000_000
#: Most CPU threads a run may ask for.
MAX_THREADS = 1024
MAX_SAMPLES = 10_000
#: Largest side ``image_size`` may ask for, and the largest validation fraction.
MAX_IMAGE_SIDE = 4096
MAX_VAL_FRACTION = 0.5

#: The named data sets (vaekit.data.datasets reads them): their protocols fix their epochs,
#: DEFAULT_EPOCHS unless given, where your own data train ``epochs`` AUTO by default.
DATASET_NAMES = ("mnist", "fashion-mnist", "mnist-small", "shapes", "shapes-small")
DEFAULT_EPOCHS = 10
#: ``epochs`` AUTO: the patience (epochs without a better held-out −ELBO before it stops), the
#: most epochs it trains and the most minutes, unless given. The measurements behind them are
#: in docs/data.md ("How long to train").
AUTO_PATIENCE = 10
AUTO_MAX_EPOCHS = 1000
AUTO_MAX_MINUTES = 60.0
