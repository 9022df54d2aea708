"""Named recipes that reproduce the reference VAEs vaekit grew from.

A preset is a set of ModelConfig and TrainConfig values; explicit command-line flags override
them (``vaekit train --preset tf-mlp --epochs 3``). ``input_shape`` and, for conditional models,
``n_classes`` always come from the data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from vaekit.errors import ConfigError


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    model: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    conditional: bool = False


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "pytorch-example",
            "PyTorch's examples/vae: 784-400-20, ReLU, Bernoulli on grey levels, Adam 1e-3, "
            "batch 128, 10 epochs; samples and reconstructions every epoch",
            model={"hidden": (400,), "latent_dim": 20, "activation": "relu"},
            train={"data": "mnist", "batch_size": 128, "lr": 1e-3, "epochs": 10},
        ),
        Preset(
            "tf-mlp",
            "the TensorFlow-style MLP VAE: 784-128-100, ELU, sigmoid cross-entropy, Adam 1e-3, "
            "batch 64; a 4×4 sample grid every 1000 iterations",
            model={"hidden": (128,), "latent_dim": 100, "activation": "elu"},
            train={
                "data": "mnist",
                "batch_size": 64,
                "lr": 1e-3,
                "epochs": 10,
                "sample_every_steps": 1000,
                "sample_count": 16,
            },
        ),
        Preset(
            "numpy-scratch",
            "the from-scratch NumPy VAE with a 2-d latent (784-200-2, ReLU, Bernoulli, Adam 1e-3, "
            "batch 128, 20 epochs), to draw the manifold",
            model={"hidden": (200,), "latent_dim": 2, "activation": "relu"},
            train={"data": "mnist", "engine": "numpy", "batch_size": 128, "epochs": 20},
        ),
        Preset(
            "deconv-mse",
            "convolutional encoder and deconvolution decoder (32-64 channels, 20-d latent) "
            "trained with squared error: a Gaussian decoder with fixed σ² = ½",
            model={
                "arch": "conv",
                "conv_channels": (32, 64),
                "hidden": (256,),
                "latent_dim": 20,
                "likelihood": "gaussian",
                "sigma": math.sqrt(0.5),
            },
            train={"data": "mnist", "batch_size": 128, "lr": 1e-3, "epochs": 10},
        ),
        Preset(
            "burda-vae",
            "Burda et al. (2015): 784-200-200-50, tanh, Bernoulli, dynamically binarized MNIST, "
            "batch 20, Adam (ε = 1e-4) at 1e-3·10^(−i/7) for 3^i epochs, i = 0…7 (3,280 epochs)",
            model={"hidden": (200, 200), "latent_dim": 50, "activation": "tanh"},
            train={
                "data": "mnist",
                "binarize": "dynamic",
                "batch_size": 20,
                "lr": 1e-3,
                "lr_schedule": "burda",
                "adam_eps": 1e-4,
                "epochs": 3280,
            },
        ),
        Preset(
            "conditional-mlp",
            "a conditional VAE (784-400-2, ReLU, Bernoulli, 20 epochs, a VampPrior p(z|y) per "
            "class) that draws the digit you ask for",
            model={"hidden": (400,), "latent_dim": 2, "activation": "relu"},
            train={"data": "mnist", "epochs": 20},
            conditional=True,
        ),
    )
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown preset {name!r}; choose one of {', '.join(PRESETS)} (see 'vaekit presets')"
        ) from None
