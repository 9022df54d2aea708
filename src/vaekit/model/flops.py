"""The work of a model: floating-point operations of its matrix products, counted from its
:class:`~vaekit.config.settings.ModelConfig` alone, so that a budget of work means the same on
every machine.

A product of an (m × k) matrix by a (k × n) one costs 2·m·k·n FLOPs (a multiply and an add per
term). Counted are the products that carry the weights, the ones PyTorch runs as matrix
multiplies or convolutions (what ``torch.utils.flop_counter.FlopCounterMode`` counts; the
hand-written passes run the same products): a dense layer of ``in`` inputs and ``out`` outputs
costs 2·in·out per row it reads; a 4×4 convolution of stride 2, 2·16·C_in·C_out per position
of its smaller side (its output; a transposed one's input), padding included; the mixture
prior's density (:func:`vaekit.model.objectives.mixture_log_density`), one product
[z², z]·coefficientsᵀ, 2·2K·C per latent draw for C components over K dimensions. Biases,
activations, the loss terms and the optimizer are not counted.

A training step runs each product forward, then backward the gradient of its weight (as much
again) and the gradient of its input (as much again), except where that input needs none: the
data x, read by the encoder's first layer. So a product costs 3× its forward FLOPs in training,
and the encoder's first layer on x 2×. The VampPrior's pseudo-inputs are learned: the encoder's
first layer computes their gradient too; with two stochastic layers only their mean of z1 goes
on (into q(z2|z1)), so the encoder's ``logvar`` head runs on them forward only.

Where each network runs, per step of B examples (S: ``iw_samples``, 1 but for the iwae
objective): the encoder on the B inputs; the decoder on the S·B latent draws; with two
stochastic layers, q(z2|z1) and p(z1|z2) on the S·B draws; a flow's context on the B encoder
outputs and its MADE on the S·B draws; the VampPrior's C pseudo-inputs through the encoder
(and q(z2|z1) with two layers) once per step, C/B per example; a mixture prior's density on the
S·B draws. Each network is a list of :class:`Product` s (:func:`networks`): a new kind of layer
adds its products there.
"""

from __future__ import annotations

from dataclasses import dataclass

from vaekit.config.settings import ModelConfig
from vaekit.errors import ConfigError
from vaekit.model import parameters

#: Taps of the convolutions' kernels (4 × 4, as :mod:`vaekit.model.parameters` shapes them).
KERNEL_TAPS = 16


@dataclass(frozen=True)
class Product:
    """One weight's product: ``flops`` forward per row it reads (an example or a latent draw),
    and whether it reads the network's input (whose gradient a backward pass skips where the
    input is data)."""

    name: str
    flops: int
    reads_input: bool = False


@dataclass(frozen=True)
class Pass:
    """A network's products run on ``rows`` rows in a step, with or without the gradient of
    the network's input; ``backward`` False: products whose outputs no loss reads, so that no
    gradient flows through them."""

    products: tuple[Product, ...]
    rows: int
    input_grad: bool
    backward: bool = True

    def forward(self) -> int:
        return self.rows * sum(p.flops for p in self.products)

    def training(self) -> int:
        """Forward, then the weights' gradients and the inputs' gradients where needed."""
        if not self.backward:
            return self.forward()
        return self.rows * sum(
            p.flops * (2 + (self.input_grad or not p.reads_input)) for p in self.products
        )


def _dense(config: ModelConfig, name: str, reads_input: bool = False) -> Product:
    size_out, size_in = parameters.shapes(config)[f"{name}.weight"]
    return Product(name, 2 * size_in * size_out, reads_input)


def _conv(config: ModelConfig, name: str, positions: int, reads_input: bool = False) -> Product:
    size_out, size_in = parameters.shapes(config)[f"{name}.weight"][:2]
    return Product(name, 2 * KERNEL_TAPS * size_in * size_out * positions, reads_input)


def _hidden(config: ModelConfig, prefix: str, layers: int, reads: bool = False) -> list[Product]:
    """The hidden layers ``prefix.hidden.i`` of the encoder, the decoder and the networks
    between two stochastic layers, a dense product each, and a second one of the same shape
    for a gated layer's gate (``activation`` gated: (h·Wᵀ + b) ⊙ σ(h·Vᵀ + c)); ``reads``:
    whether the first layer reads the network's input."""
    products = []
    for i in range(layers):
        first = reads and i == 0
        products.append(_dense(config, f"{prefix}.hidden.{i}", first))
        if config.activation == "gated":
            products.append(_dense(config, f"{prefix}.hidden.{i}.gate", first))
    return products


def _gaussian(config: ModelConfig, prefix: str, layers: int, reads: bool) -> list[Product]:
    """Hidden layers, then the heads ``mu`` and ``logvar``; ``reads``: whether the first of
    them reads the network's input (the heads, without hidden layers)."""
    heads = [_dense(config, f"{prefix}.{head}", reads and not layers) for head in ("mu", "logvar")]
    return _hidden(config, prefix, layers, reads) + heads


def _encoder(config: ModelConfig) -> list[Product]:
    convs = []
    if config.arch == "conv":
        height, width = config.input_shape[1:]
        for i in range(len(config.conv_channels)):
            positions = (height >> (i + 1)) * (width >> (i + 1))
            convs.append(_conv(config, f"encoder.conv.{i}", positions, i == 0))
    return convs + _gaussian(config, "encoder", len(config.hidden), not convs)


def _decoder(config: ModelConfig) -> list[Product]:
    hidden = _hidden(config, "decoder", len(config.decoder_sizes))
    if config.arch != "conv":
        return [*hidden, _dense(config, "decoder.out")]
    _, height, width = config.conv_feature_shape
    deconvs = [
        _conv(config, f"decoder.deconv.{i}", (height << i) * (width << i))
        for i in range(len(config.conv_channels))
    ]
    return [*hidden, _dense(config, "decoder.project"), *deconvs]


def _flow(config: ModelConfig) -> tuple[list[Product], list[Product]]:
    """(the context products, on the encoder's output; the MADEs' products, on the draws)."""
    context, made = [], []
    for t in range(config.flow_steps):
        context.append(_dense(config, f"flow.{t}.context"))
        made += [_dense(config, f"flow.{t}.hidden.{i}") for i in range(len(config.flow_hidden))]
        made += [_dense(config, f"flow.{t}.{head}") for head in ("shift", "gate")]
    return context, made


def networks(config: ModelConfig) -> dict[str, list[Product]]:
    """Each network's products by name: ``encoder``, ``decoder``, and where the model has them
    ``top.encoder`` (q(z2|z1)), ``top.decoder`` (p(z1|z2)), ``flow.context``, ``flow.made`` and
    ``mixture`` (the prior's density)."""
    if config.encoder_module or config.decoder_module:
        raise ConfigError("the work of your own encoder_module or decoder_module is not counted")
    found = {"encoder": _encoder(config), "decoder": _decoder(config)}
    if config.top_latent_dim:
        for net in ("top.encoder", "top.decoder"):  # each reads a latent draw
            found[net] = _gaussian(config, net, len(config.top_hidden), False)
    if config.flow == "iaf":
        found["flow.context"], found["flow.made"] = _flow(config)
    if config.prior in ("vamp", "mog"):
        components = 2 * 2 * config.prior_dim * config.prior_components
        found["mixture"] = [Product("mixture", components)]
    return found


def passes(config: ModelConfig, batch_size: int, samples: int) -> list[Pass]:
    """The networks run in one step of ``batch_size`` examples with ``samples`` latent draws
    each: the training step (``samples`` = ``iw_samples``), or one evaluation of the bound."""
    nets = networks(config)
    rows = {net: samples * batch_size for net in nets}  # the draws, but for two networks:
    rows.update({"encoder": batch_size, "flow.context": batch_size})  # on the examples
    found = [Pass(tuple(products), rows[net], net != "encoder") for net, products in nets.items()]
    if config.prior == "vamp":
        found += _pseudo_inputs(config, nets)
    return found


def _pseudo_inputs(config: ModelConfig, nets: dict[str, list[Product]]) -> list[Pass]:
    """The VampPrior's pseudo-inputs, through the encoder once per step, learned: with their
    gradient. With two stochastic layers q(z2|z1) reads their mean of z1 alone, so the
    encoder's ``logvar`` head runs forward only."""
    count = config.prior_components
    if not config.top_latent_dim:
        return [Pass(tuple(nets["encoder"]), count, True)]
    encoder = [p for p in nets["encoder"] if p.name != "encoder.logvar"]
    unread = [p for p in nets["encoder"] if p.name == "encoder.logvar"]
    return [
        Pass(tuple(encoder), count, True),
        Pass(tuple(unread), count, True, backward=False),
        Pass(tuple(nets["top.encoder"]), count, True),
    ]


def training_step_flops(config: ModelConfig, batch_size: int) -> int:
    """FLOPs of one training step on ``batch_size`` examples: forward and backward."""
    return sum(p.training() for p in passes(config, batch_size, config.iw_samples))


def training_flops(config: ModelConfig, batch_size: int) -> float:
    """FLOPs per training example, forward and backward, at ``batch_size`` examples a step
    (which matters only for the VampPrior, whose pseudo-inputs each step shares)."""
    return training_step_flops(config, batch_size) / batch_size


def epoch_flops(config: ModelConfig, examples: int, batch_size: int) -> int:
    """FLOPs of one training epoch over ``examples`` examples: its full steps of
    ``batch_size`` and the last, smaller one, if any."""
    full, rest = divmod(examples, batch_size)
    last = training_step_flops(config, rest) if rest else 0
    return full * training_step_flops(config, batch_size) + last


def evaluation_flops(config: ModelConfig, samples: int = 1, batch_size: int = 1) -> float:
    """FLOPs per test example of one forward pass of the bound with ``samples`` draws (1: the
    ELBO; k: L_k), in calls of ``batch_size`` examples (the VampPrior's pseudo-inputs are
    encoded once per call). An evaluation that splits the k draws into several calls repeats
    the per-call part (the pseudo-inputs; with a flow, the encoder it reads) once per call."""
    return sum(p.forward() for p in passes(config, batch_size, samples)) / batch_size


def tflop(flops: float) -> float:
    """FLOPs in TFLOP (10¹²)."""
    return flops / 1e12
