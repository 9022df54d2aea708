"""The VAE's forward and backward passes, by hand, for NumPy arrays and torch tensors alike.

Parameters are a dict of named arrays or tensors (the names and shapes of
:func:`vaekit.model.parameters.shapes`, which are also the torch model's parameter names); every
function computes in its inputs' library (:func:`vaekit.model.objectives.namespace`).
For a batch x (N, D) and noise eps (N, K), with L = (1/N) Σ_n (recon_n + β·kl_n):

forward
    h_i = act(h_{i−1}·W_iᵀ + b_i)                 encoder hidden layers, h_0 = x
    mu = h·W_muᵀ + b_mu,  logvar = h·W_lvᵀ + b_lv
    z = mu + exp(½·logvar) ⊙ eps                  reparameterization
    g_j = act(g_{j−1}·V_jᵀ + c_j)                 decoder hidden layers, g_0 = z
    out = g·V_outᵀ + c_out                        Bernoulli logits, or the Gaussian mean

backward (each line is ∂L/∂· ; derived in docs/math.md)
    d_out = ∂(−log p(x|z))/∂out / N               the likelihood's ``grad`` (objectives.py):
                                                  (σ(out) − x)/N Bernoulli, (out − x)/(σ²N) Gaussian
    d_z   = back through the decoder
    d_mu  = d_z + w·∂KL/∂mu                       the prior's ``kl_grad``: mu for N(0, I),
                                                  (mu − m_y)·e^−lv_y for N(m_y, e^lv_y)
    d_lv  = d_z ⊙ ½·(z − mu) + w·∂KL/∂logvar      ½·(exp(logvar) − 1) for N(0, I),
                                                  ½·(exp(logvar − lv_y) − 1) for N(m_y, e^lv_y)
    d_m_c = w·Σ_{n: y_n = c} ∂KL_n/∂m_c           the class prior N(m_y, e^lv_y) only:
    d_lv_c = w·Σ_{n: y_n = c} ∂KL_n/∂lv_c         its parameters, summed over each class
    with the KL weight w = β/N (free bits λ: 0 for dimensions whose batch-mean KL is below λ),
    then back through the encoder heads and hidden layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vaekit.config.settings import ModelConfig
from vaekit.engines.handwritten.layers import ACTIVATIONS, dense, dense_backward
from vaekit.model import objectives, parameters
from vaekit.model.objectives import Array, namespace, reparameterize
from vaekit.model.priors import Prior

Params = dict[str, Array]


def uncovered(config: ModelConfig) -> list[str]:
    """What of ``config`` the hand-written passes do not cover, in words (empty: they cover it
    all). They cover the MLP VAE with pointwise activations and one stochastic layer, the ELBO
    objective, either likelihood, free bits, a conditional model, and the standard and class
    priors."""
    return [
        what
        for what, used in (
            ("the conv architecture", config.arch != "mlp"),
            ("gated dense layers", config.activation == "gated"),
            (f"the {config.objective} objective", config.objective != "elbo"),
            (f"the {config.prior} prior", config.prior in ("vamp", "mog")),
            ("a second stochastic layer", config.top_latent_dim > 0),
            ("a flow", config.flow != "none"),
            ("your own networks", bool(config.encoder_module or config.decoder_module)),
        )
        if used
    ]


@dataclass
class Forward:
    """What the backward pass needs from the forward pass (pre-activations and activations)."""

    encoder: list[tuple[Array, Array]]  # (input, pre-activation) of each hidden layer
    h: Array  # input of the encoder heads
    mu: Array
    logvar: Array
    z: Array
    decoder: list[tuple[Array, Array]]
    g: Array  # input of the decoder's output layer
    out: Array  # logits (Bernoulli) or mean (Gaussian)


def init_params(config: ModelConfig, rng: np.random.Generator, dtype=np.float32) -> Params:
    """torch.nn.Linear's default init: W, b ~ U(−1/√fan_in, 1/√fan_in); log σ = log(sigma); the
    class prior's means and log-variances 0 (it starts as N(0, I) for every class)."""
    params: Params = {}
    for name, shape in parameters.shapes(config).items():
        if name == "decoder.log_sigma":
            params[name] = np.full(shape, np.log(config.sigma), dtype=dtype)
            continue
        if name.startswith("prior."):
            params[name] = np.zeros(shape, dtype=dtype)
            continue
        layer = name.rsplit(".", 1)[0]
        fan_in = parameters.shapes(config)[layer + ".weight"][1]
        bound = 1.0 / np.sqrt(fan_in)
        params[name] = rng.uniform(-bound, bound, size=shape).astype(dtype)
    return params


Cache = list[tuple[Array, Array]]  # (input, pre-activation) of each hidden layer


def with_label(h: Array, onehot: Array | None) -> Array:
    """[h, onehot(y)] for a conditional model; h itself otherwise."""
    if onehot is None:
        return h
    return namespace(h).concatenate([h, objectives.as_array(onehot, h)], axis=1)


def hidden_stack(
    config: ModelConfig, p: Params, part: str, h: Array, layers: int
) -> tuple[Array, Cache]:
    """h_i = act(h_{i−1}·W_iᵀ + b_i) through ``part``'s hidden layers; (output, cache)."""
    act = ACTIVATIONS[config.activation].forward
    cache = []
    for i in range(layers):
        a = dense(h, p[f"{part}.hidden.{i}.weight"], p[f"{part}.hidden.{i}.bias"])
        cache.append((h, a))
        h = act(a)
    return h, cache


def encode(config: ModelConfig, p: Params, x: Array, onehot: Array | None = None):
    """(mu, logvar) of q(z|x[, y]) for flat x (N, D), the hidden layers' cache and the heads'
    input."""
    h, cache = hidden_stack(config, p, "encoder", with_label(x, onehot), len(config.hidden))
    mu = dense(h, p["encoder.mu.weight"], p["encoder.mu.bias"])
    logvar = dense(h, p["encoder.logvar.weight"], p["encoder.logvar.bias"])
    return mu, logvar, cache, h


def decode(
    config: ModelConfig, p: Params, z: Array, onehot: Array | None = None
) -> tuple[Array, Cache, Array]:
    """Decoder output (logits or mean) for z (N, K) [and y], the cache and the output layer's
    input."""
    g, cache = hidden_stack(config, p, "decoder", with_label(z, onehot), len(config.decoder_sizes))
    return dense(g, p["decoder.out.weight"], p["decoder.out.bias"]), cache, g


def log_sigma(config: ModelConfig, p: Params) -> Array | float:
    """The Gaussian's log σ: the learned parameter, or log of the fixed σ."""
    return p.get("decoder.log_sigma", float(np.log(config.sigma)))


def forward(
    config: ModelConfig, p: Params, x: Array, eps: Array, onehot: Array | None = None
) -> Forward:
    """Run encoder, reparameterization and decoder, keeping what backward needs."""
    mu, logvar, enc, h = encode(config, p, x, onehot)
    z = reparameterize(mu, logvar, eps)
    out, dec, g = decode(config, p, z, onehot)
    return Forward(enc, h, mu, logvar, z, dec, g, out)


def reconstruction_nll(config: ModelConfig, p: Params, x: Array, out: Array) -> Array:
    """−log p(x|z) per example, nats, from the decoder output ``out`` (logits or mean)."""
    return objectives.LIKELIHOODS[config.likelihood].nll(out, x, log_sigma(config, p))


def backward(
    config: ModelConfig,
    p: Params,
    prior: Prior,
    x: Array,
    f: Forward,
    kl_weight: float | Array,
    labels: Array | None = None,
) -> Params:
    """∂L/∂θ for every parameter θ, L = mean over the batch of recon + Σ_k N·w_k·kl_k, with the
    KL weight w = β/N, or (K,) of β/N and 0 (free bits); ``labels``: the class prior's y."""
    n = x.shape[0]
    act = ACTIVATIONS[config.activation]
    grads: Params = {}

    # likelihood → decoder output
    d_out, d_ls = objectives.LIKELIHOODS[config.likelihood].grad(f.out, x, log_sigma(config, p))
    d_out /= n
    if d_ls is not None:
        # A calibrated σ is set by the step, not learned: a zero gradient leaves it where it is.
        calibrated = config.learn_sigma == "calibrated"
        grads["decoder.log_sigma"] = d_ls * 0 if calibrated else d_ls / n

    # decoder, output layer then hidden layers in reverse
    gw, gb, d = dense_backward(d_out, f.g, p["decoder.out.weight"])
    grads["decoder.out.weight"], grads["decoder.out.bias"] = gw, gb
    for j in reversed(range(len(f.decoder))):
        g_in, a = f.decoder[j]
        h = f.g if j == len(f.decoder) - 1 else f.decoder[j + 1][0]
        d = act.backward(a, h, d)
        w = p[f"decoder.hidden.{j}.weight"]
        gw, gb, d = dense_backward(d, g_in, w)
        grads[f"decoder.hidden.{j}.weight"], grads[f"decoder.hidden.{j}.bias"] = gw, gb
    d_z = d[:, : config.latent_dim]  # a conditional decoder's input is [z, onehot(y)]

    # reparameterization and the closed-form KL
    kl_mu, kl_logvar, kl_prior = prior.kl_grad(f.mu, f.logvar, labels)
    for name, g in kl_prior.items():
        grads[name] = objectives.as_array(kl_weight * g, p[name])
    d_mu = d_z + kl_weight * kl_mu
    d_logvar = d_z * 0.5 * (f.z - f.mu) + kl_weight * kl_logvar

    # encoder heads, then hidden layers in reverse (no gradient is needed for x itself, which
    # the heads read where there are no hidden layers)
    hidden = bool(f.encoder)
    gw, gb, d = dense_backward(d_mu, f.h, p["encoder.mu.weight"], hidden)
    grads["encoder.mu.weight"], grads["encoder.mu.bias"] = gw, gb
    gw, gb, d_lv_h = dense_backward(d_logvar, f.h, p["encoder.logvar.weight"], hidden)
    grads["encoder.logvar.weight"], grads["encoder.logvar.bias"] = gw, gb
    d = d + d_lv_h if hidden else None
    for i in reversed(range(len(f.encoder))):
        h_in, a = f.encoder[i]
        h = f.h if i == len(f.encoder) - 1 else f.encoder[i + 1][0]
        d = act.backward(a, h, d)
        gw, gb, d = dense_backward(d, h_in, p[f"encoder.hidden.{i}.weight"], i > 0)
        grads[f"encoder.hidden.{i}.weight"], grads[f"encoder.hidden.{i}.bias"] = gw, gb
    return grads


def elbo_gradients(
    config: ModelConfig,
    p: Params,
    prior: Prior,
    x: Array,
    eps: Array,
    beta: float,
    onehot: Array | None = None,
    labels: Array | None = None,
) -> tuple[Array, Array, Params]:
    """(recon (N,), kl (N, K), ∂L/∂θ) for a batch x (N, D) and noise eps (N, K): recon = −log p(x|z)
    and kl the prior's KL per dimension, nats, and the gradient of
    L = mean(recon) + β·Σ_k max(λ, mean(kl_k)) (= mean(recon + β·kl) without free bits λ)."""
    f = forward(config, p, x, eps, onehot)
    calibrated = config.learn_sigma == "calibrated"
    if calibrated:
        # The loss and its gradient weigh the batch by its best σ (backward gives σ no
        # gradient); the running mean that evaluation and sampling use is stored after.
        stored = p["decoder.log_sigma"] * 1
        best = objectives.calibrated_log_sigma(f.out, x)
        p["decoder.log_sigma"][...] = best
    recon = reconstruction_nll(config, p, x, f.out)
    kl = prior.kl_per_dim(f.mu, f.logvar, labels)
    _, mask = objectives.free_bits(kl.mean(axis=0), config.free_bits)
    kl_weight = beta / len(x) if mask is None else (beta / len(x)) * mask
    grads = backward(config, p, prior, x, f, kl_weight, labels)
    if calibrated:
        p["decoder.log_sigma"][...] = objectives.running_log_sigma(stored, best)
    return recon, kl, grads
