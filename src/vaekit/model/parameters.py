"""The parameters of a model: the name and shape of every weight, the contract that both engines
build, the torch modules name theirs by and checkpoints hold.

Dense weights are stored (out, in), as ``torch.nn.Linear`` does; convolutions (out, in, 4, 4)
and transposed convolutions (in, out, 4, 4), as torch stores them. Your own ``encoder_module`` /
``decoder_module`` contribute the names and shapes of their state dicts under ``encoder.`` /
``decoder.`` (read by building them on torch's "meta" device, which allocates nothing).
"""

from __future__ import annotations

import functools
import math

from vaekit.config.limits import MAX_PARAMETERS
from vaekit.config.settings import ModelConfig
from vaekit.errors import ConfigError
from vaekit.model import custom_networks

Shapes = dict[str, tuple[int, ...]]


@functools.cache
def shapes(config: ModelConfig) -> Shapes:
    """Name → shape of every weight of ``config``'s model: the encoder's, the decoder's (with
    the learned log σ of a Gaussian likelihood), the prior's, a second layer's and a flow's."""
    found = {**_encoder(config), **_decoder(config)}
    if config.log_sigma_shape is not None:
        found["decoder.log_sigma"] = config.log_sigma_shape
    return {**found, **_prior(config), **_top_layer(config), **_flow(config)}


def count(config: ModelConfig) -> int:
    """How many numbers the model learns."""
    return sum(math.prod(shape) for shape in shapes(config).values())


def check_size(config: ModelConfig) -> None:
    """Refuse a model of more than MAX_PARAMETERS parameters before anything is allocated."""
    n = count(config)
    if n > MAX_PARAMETERS:
        raise ConfigError(
            f"this model would have {n:,} parameters, more than the limit of "
            f"{MAX_PARAMETERS:,}; use smaller layers"
        )


def _dense(
    prefix: str, width: int, sizes: tuple[int, ...], gated: bool = False
) -> tuple[Shapes, int]:
    """Hidden layers ``prefix.hidden.i`` of ``sizes`` over an input of ``width``, and the width
    they end with; a ``gated`` layer has a gate ``prefix.hidden.i.gate`` of the same shapes."""
    found: Shapes = {}
    for i, units in enumerate(sizes):
        layer = f"{prefix}.hidden.{i}"
        for name in (layer, f"{layer}.gate") if gated else (layer,):
            found[f"{name}.weight"] = (units, width)
            found[f"{name}.bias"] = (units,)
        width = units
    return found, width


def _gated(config: ModelConfig) -> bool:
    """Whether the MLP hidden layers are gated dense layers."""
    return config.activation == "gated"


def _heads(prefix: str, width: int, size: int, names: tuple[str, ...]) -> Shapes:
    return {
        name: shape
        for head in names
        for name, shape in (
            (f"{prefix}.{head}.weight", (size, width)),
            (f"{prefix}.{head}.bias", (size,)),
        )
    }


def _encoder(config: ModelConfig) -> Shapes:
    if config.encoder_module is not None:
        return custom_networks.module_shapes(config, "encoder")
    found: Shapes = {}
    width = config.input_dim
    if config.arch == "conv":
        channels = config.input_shape[0]
        for i, out in enumerate(config.conv_channels):
            found[f"encoder.conv.{i}.weight"] = (out, channels, 4, 4)
            found[f"encoder.conv.{i}.bias"] = (out,)
            channels = out
        width = math.prod(config.conv_feature_shape)
    hidden, width = _dense("encoder", width + config.n_classes, config.hidden, _gated(config))
    return {**found, **hidden, **_heads("encoder", width, config.latent_dim, ("mu", "logvar"))}


def _decoder(config: ModelConfig) -> Shapes:
    if config.decoder_module is not None:
        return custom_networks.module_shapes(config, "decoder")
    width = config.latent_dim + config.n_classes
    found, width = _dense("decoder", width, config.decoder_sizes, _gated(config))
    if config.arch != "conv":
        return {**found, **_heads("decoder", width, config.input_dim, ("out",))}
    features = math.prod(config.conv_feature_shape)
    found["decoder.project.weight"] = (features, width)
    found["decoder.project.bias"] = (features,)
    channels = config.conv_channels[-1]
    for i, out in enumerate((*reversed(config.conv_channels[:-1]), config.input_shape[0])):
        found[f"decoder.deconv.{i}.weight"] = (channels, out, 4, 4)
        found[f"decoder.deconv.{i}.bias"] = (out,)
        channels = out
    return found


def _prior(config: ModelConfig) -> Shapes:
    """A learned prior's parameters, ``prior.*``."""
    k, c = config.prior_dim, config.prior_components
    if config.prior == "vamp":
        logits = {"prior.logits": (c,)} if config.n_classes else {}
        return {"prior.pseudo_inputs": (c, config.input_dim), **logits}
    if config.prior == "mog":
        return {"prior.means": (c, k), "prior.logvars": (c, k), "prior.logits": (c,)}
    if config.prior == "class":
        return {"prior.means": (config.n_classes, k), "prior.logvars": (config.n_classes, k)}
    return {}


def _top_layer(config: ModelConfig) -> Shapes:
    """The networks between two stochastic layers: ``top.encoder.*`` for q(z2|z1),
    ``top.decoder.*`` for p(z1|z2)."""
    if not config.top_latent_dim:
        return {}
    k1, k2 = config.latent_dim, config.top_latent_dim
    found: Shapes = {}
    for net, size_in, size_out, sizes in (
        ("top.encoder", k1, k2, config.top_hidden),
        ("top.decoder", k2, k1, config.top_hidden[::-1]),
    ):
        hidden, width = _dense(net, size_in, sizes, _gated(config))
        found.update({**hidden, **_heads(net, width, size_out, ("mu", "logvar"))})
    return found


def _flow(config: ModelConfig) -> Shapes:
    """The inverse autoregressive flow's MADE networks, ``flow.{t}.*``, each step conditioned on
    the encoder's last hidden layer (``context``); their masks follow from the sizes and are not
    stored."""
    if config.flow != "iaf":
        return {}
    found: Shapes = {}
    for t in range(config.flow_steps):
        hidden, width = _dense(f"flow.{t}", config.latent_dim, config.flow_hidden)
        context = {f"flow.{t}.context.weight": (config.flow_hidden[0], config.encoder_width)}
        found.update(hidden)
        found.update(context)
        found.update(_heads(f"flow.{t}", width, config.latent_dim, ("shift", "gate")))
    return found
