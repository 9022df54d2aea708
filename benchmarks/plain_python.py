"""How much faster is the NumPy engine than the same VAE written in plain Python?

The original from-scratch NumPy VAE project claimed NumPy was roughly 500-1000x faster than
plain Python. This script measures our own number. It:

1. implements the VAE's forward and backward pass in plain Python (lists of floats, loops and
   the ``math`` module; no NumPy), with exactly the math of ``vaekit.engines.handwritten.model``:
   dense layers with weights stored (out, in), the hidden activation, the reparameterization
   z = mu + exp(logvar/2)*eps, a Bernoulli likelihood on logits and the closed-form KL, and
   the gradient of L = mean over the batch of (recon + beta*KL) w.r.t. every parameter;
2. checks that its loss and every gradient match ``NumpyEngine.loss_and_grads`` in float64
   (relative error of the norms below 1e-9) and stops if they do not;
3. times one forward+backward pass of both on the same batch of real ``mnist-small`` images
   (NumPy in float64 and float32) and prints the speed-ups.

Run it from the repository root, with vaekit importable (``pip install -e .``, or prefix the
command with ``PYTHONPATH=src``)::

    python benchmarks/plain_python.py            # 784-64-8 VAE, batch 16, relu (~20 s)
    python benchmarks/plain_python.py --quick    # smaller sizes, a few seconds
    python benchmarks/plain_python.py --hidden 128 --latent-dim 16 --batch-size 32

The plain-Python dot product is ``sum(map(operator.mul, a, b))``, the fastest pure-Python
form; a hand-written index loop is about 1.5x slower, so the speed-up printed here is on the
conservative side.
"""

from __future__ import annotations

import argparse
import math
import operator
import os
import platform
import sys
import time
from collections.abc import Callable

import numpy as np

from vaekit.config.settings import ModelConfig
from vaekit.data import load_dataset
from vaekit.engines.numpy.engine import NumpyEngine
from vaekit.model import parameters

Vector = list[float]
Matrix = list[list[float]]  # a list of rows
Params = dict[str, "Matrix | Vector"]

TOLERANCE = 1e-9
DEFAULTS = {"hidden": [64], "latent_dim": 8, "batch_size": 16, "repeats": 10, "min_time": 10.0}
QUICK = {"hidden": [32], "latent_dim": 4, "batch_size": 8, "repeats": 3, "min_time": 0.5}


# --- plain-Python building blocks ---------------------------------------------------------------


def dot(a: Vector, b: Vector) -> float:
    """Σ_i a_i·b_i."""
    return sum(map(operator.mul, a, b))


def transpose(m: Matrix) -> Matrix:
    """Rows become columns."""
    return [list(column) for column in zip(*m, strict=True)]


def dense(h: Matrix, weight: Matrix, bias: Vector) -> Matrix:
    """a = h·Wᵀ + b for a batch h (N rows of `in`), W (out rows of `in`), b (out)."""
    return [[dot(row, x) + b for row, b in zip(weight, bias, strict=True)] for x in h]


def dense_backward(
    g: Matrix, h: Matrix, weight: Matrix, input_grad: bool = True
) -> tuple[Matrix, Vector, Matrix | None]:
    """(∂L/∂W, ∂L/∂b, ∂L/∂h) of a = h·Wᵀ + b given g = ∂L/∂a: gᵀ·h, Σ_rows g and g·W.

    ∂L/∂h is skipped (``None``) when ``input_grad`` is false, as for the first encoder layer.
    """
    g_t, h_t = transpose(g), transpose(h)
    grad_w = [[dot(g_o, h_i) for h_i in h_t] for g_o in g_t]
    grad_b = [sum(g_o) for g_o in g_t]
    if not input_grad:
        return grad_w, grad_b, None
    w_t = transpose(weight)
    return grad_w, grad_b, [[dot(g_n, w_i) for w_i in w_t] for g_n in g]


def map1(f: Callable[[float], float], m: Matrix) -> Matrix:
    """f applied to every element of m."""
    return [[f(v) for v in row] for row in m]


def add(m1: Matrix, m2: Matrix) -> Matrix:
    """Element-wise m1 + m2."""
    return [[a + b for a, b in zip(r1, r2, strict=True)] for r1, r2 in zip(m1, m2, strict=True)]


def sigmoid(a: float) -> float:
    """σ(a) = ½·(1 + tanh(a/2)), as the NumPy engine computes it (no overflow)."""
    return 0.5 * (1.0 + math.tanh(0.5 * a))


def softplus(a: float) -> float:
    """log(1 + e^a) = max(a, 0) + log1p(e^−|a|), stable for any a."""
    return max(a, 0.0) + math.log1p(math.exp(-abs(a)))


# Each activation: (forward a -> h, derivative (a, h) -> dh/da), as in ``layers.ACTIVATIONS``.
ACTIVATIONS: dict[str, tuple[Callable[[float], float], Callable[[float, float], float]]] = {
    "relu": (lambda a: a if a > 0 else 0.0, lambda a, h: 1.0 if a > 0 else 0.0),
    "tanh": (math.tanh, lambda a, h: 1.0 - h * h),
    "sigmoid": (sigmoid, lambda a, h: h * (1.0 - h)),
    "softplus": (softplus, lambda a, h: sigmoid(a)),
    "elu": (lambda a: a if a > 0 else math.expm1(a), lambda a, h: 1.0 if a > 0 else h + 1.0),
    "leaky_relu": (lambda a: a if a > 0 else 0.01 * a, lambda a, h: 1.0 if a > 0 else 0.01),
}


def activation_backward(name: str, g: Matrix, a: Matrix, h: Matrix) -> Matrix:
    """g ⊙ h'(a), given the pre-activation a and the activation h."""
    derivative = ACTIVATIONS[name][1]
    return [
        [gv * derivative(av, hv) for gv, av, hv in zip(g_row, a_row, h_row, strict=True)]
        for g_row, a_row, h_row in zip(g, a, h, strict=True)
    ]


# --- the VAE ------------------------------------------------------------------------------------


def hidden_stack(config: ModelConfig, p: Params, prefix: str, count: int, h: Matrix) -> tuple:
    """Run ``count`` dense+activation layers named ``{prefix}.{i}``; (output, [(in, a, h)])."""
    act = ACTIVATIONS[config.activation][0]
    cache = []
    for i in range(count):
        a = dense(h, p[f"{prefix}.{i}.weight"], p[f"{prefix}.{i}.bias"])
        out = map1(act, a)
        cache.append((h, a, out))
        h = out
    return h, cache


def forward(config: ModelConfig, p: Params, x: Matrix, eps: Matrix) -> dict:
    """Encoder, reparameterization and decoder; returns everything the backward pass needs."""
    h, enc = hidden_stack(config, p, "encoder.hidden", len(config.hidden), x)
    mu = dense(h, p["encoder.mu.weight"], p["encoder.mu.bias"])
    logvar = dense(h, p["encoder.logvar.weight"], p["encoder.logvar.bias"])
    z = [
        [m + math.exp(0.5 * lv) * e for m, lv, e in zip(mu_n, lv_n, eps_n, strict=True)]
        for mu_n, lv_n, eps_n in zip(mu, logvar, eps, strict=True)
    ]
    g, dec = hidden_stack(config, p, "decoder.hidden", len(config.decoder_sizes), z)
    out = dense(g, p["decoder.out.weight"], p["decoder.out.bias"])
    return {"enc": enc, "h": h, "mu": mu, "logvar": logvar, "z": z, "dec": dec, "g": g, "out": out}


def bernoulli_nll(logits: Vector, x: Vector) -> float:
    """−log Bernoulli(x; σ(l)) = Σ max(l, 0) − x·l + log1p(e^−|l|) for one example."""
    return sum(
        max(lg, 0.0) - xv * lg + math.log1p(math.exp(-abs(lg)))
        for lg, xv in zip(logits, x, strict=True)
    )


def kl_standard_normal(mu: Vector, logvar: Vector) -> float:
    """KL(N(mu, e^logvar) ‖ N(0, I)) = ½ Σ (e^lv + mu² − 1 − lv) for one example."""
    return 0.5 * sum(math.exp(lv) + m * m - 1.0 - lv for m, lv in zip(mu, logvar, strict=True))


def loss_terms(x: Matrix, f: dict, beta: float) -> tuple[Vector, Vector, float]:
    """(recon per example, KL per example, L = mean(recon + β·KL))."""
    recon = [bernoulli_nll(out_n, x_n) for out_n, x_n in zip(f["out"], x, strict=True)]
    kl = [kl_standard_normal(mu_n, lv_n) for mu_n, lv_n in zip(f["mu"], f["logvar"], strict=True)]
    loss = sum(r + beta * k for r, k in zip(recon, kl, strict=True)) / len(x)
    return recon, kl, loss


def backward_stack(
    config: ModelConfig,
    p: Params,
    prefix: str,
    cache: list,
    d: Matrix,
    grads: Params,
    first_input_grad: bool = True,
) -> Matrix | None:
    """Back through the layers of ``hidden_stack``, storing their gradients in ``grads``.

    Returns ∂L/∂(the stack's input), or ``None`` if ``first_input_grad`` is false (the encoder's
    input is the data, which needs no gradient).
    """
    for i in reversed(range(len(cache))):
        h_in, a, h_out = cache[i]
        d = activation_backward(config.activation, d, a, h_out)
        need_input = first_input_grad or i > 0
        gw, gb, d = dense_backward(d, h_in, p[f"{prefix}.{i}.weight"], need_input)
        grads[f"{prefix}.{i}.weight"], grads[f"{prefix}.{i}.bias"] = gw, gb
    return d


def backward(config: ModelConfig, p: Params, x: Matrix, f: dict, beta: float) -> Params:
    """∂L/∂θ for every parameter θ, L = mean over the batch of recon + β·KL."""
    n = len(x)
    grads: Params = {}

    # Bernoulli likelihood → logits: (σ(out) − x)/N
    d_out = [
        [(sigmoid(o) - xv) / n for o, xv in zip(o_n, x_n, strict=True)]
        for o_n, x_n in zip(f["out"], x, strict=True)
    ]

    # decoder: output layer, then hidden layers in reverse → ∂L/∂z
    gw, gb, d = dense_backward(d_out, f["g"], p["decoder.out.weight"])
    grads["decoder.out.weight"], grads["decoder.out.bias"] = gw, gb
    d_z = backward_stack(config, p, "decoder.hidden", f["dec"], d, grads)

    # reparameterization z = mu + exp(½·lv)·eps (∂z/∂lv = ½·(z − mu)) and the closed-form KL
    d_mu, d_logvar = [], []
    for dz_n, mu_n, lv_n, z_n in zip(d_z, f["mu"], f["logvar"], f["z"], strict=True):
        d_mu.append([dz + beta / n * m for dz, m in zip(dz_n, mu_n, strict=True)])
        d_logvar.append(
            [
                dz * 0.5 * (zv - m) + 0.5 * beta / n * math.expm1(lv)
                for dz, m, lv, zv in zip(dz_n, mu_n, lv_n, z_n, strict=True)
            ]
        )

    # encoder heads, then hidden layers in reverse
    gw, gb, d_from_mu = dense_backward(d_mu, f["h"], p["encoder.mu.weight"])
    grads["encoder.mu.weight"], grads["encoder.mu.bias"] = gw, gb
    gw, gb, d_from_lv = dense_backward(d_logvar, f["h"], p["encoder.logvar.weight"])
    grads["encoder.logvar.weight"], grads["encoder.logvar.bias"] = gw, gb
    d_h = add(d_from_mu, d_from_lv)
    backward_stack(config, p, "encoder.hidden", f["enc"], d_h, grads, first_input_grad=False)
    return grads


def loss_and_grads(
    config: ModelConfig, p: Params, x: Matrix, eps: Matrix, beta: float
) -> tuple[Vector, Vector, float, Params]:
    """One forward+backward pass in plain Python: (recon, kl, loss, grads)."""
    f = forward(config, p, x, eps)
    recon, kl, loss = loss_terms(x, f, beta)
    return recon, kl, loss, backward(config, p, x, f, beta)


# --- checking and timing ------------------------------------------------------------------------


def relative_error(value, reference) -> float:
    """‖value − reference‖ / ‖reference‖ (the absolute error if the reference is 0)."""
    value, reference = np.asarray(value, dtype=np.float64), np.asarray(reference, np.float64)
    scale = float(np.linalg.norm(reference))
    error = float(np.linalg.norm(value - reference))
    return error / scale if scale > 0 else error


def check(config, plain_params, x_list, eps_list, engine, x, eps, beta) -> None:
    """Stop with a message unless the plain-Python loss and gradients match the engine's."""
    recon, kl, loss, grads = loss_and_grads(config, plain_params, x_list, eps_list, beta)
    ref_loss, ref_recon, ref_kl, ref_grads = engine.loss_and_grads(x, eps, beta)
    errors = {"loss": relative_error(loss, ref_loss)}
    errors["recon"] = relative_error(recon, ref_recon)
    errors["kl"] = relative_error(kl, ref_kl)
    if set(grads) != set(ref_grads):
        sys.exit(f"FAILED: gradient names differ: {sorted(set(grads) ^ set(ref_grads))}")
    for name in parameters.shapes(config):
        errors[f"grad {name}"] = relative_error(grads[name], ref_grads[name])
    worst = max(errors, key=errors.get)
    bad = {k: v for k, v in errors.items() if not v < TOLERANCE}
    if bad:
        lines = "\n".join(f"  {k}: relative error {v:.3e}" for k, v in bad.items())
        sys.exit(f"FAILED: plain Python does not match NumpyEngine (float64):\n{lines}")
    print(
        f"check: loss {loss:.6f} nats (NumPy {ref_loss:.6f}); loss and all {len(grads)} "
        f"gradients match NumPy float64, worst relative error {errors[worst]:.1e} ({worst})"
    )


def time_plain(fn: Callable[[], object], min_time: float) -> tuple[float, float, int]:
    """Call fn until ``min_time`` seconds have passed (at least once): (best, mean, calls)."""
    times: list[float] = []
    while not times or sum(times) < min_time:
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), sum(times) / len(times), len(times)


def loop_time(fn: Callable[[], object], number: int) -> float:
    """Mean seconds per call of ``number`` back-to-back calls of fn."""
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def time_numpy(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Best over ``repeats`` of the mean time per call of a loop lasting at least 0.2 s.

    The repeats of the different functions are interleaved, so that a burst of load from
    other processes does not favour one of them.
    """
    numbers = {}
    for name, fn in fns.items():
        number = 1  # double the loop until it lasts 0.2 s, as timeit.autorange does
        while loop_time(fn, number) * number < 0.2:
            number *= 2
        numbers[name] = number
    best = dict.fromkeys(fns, math.inf)
    for _ in range(repeats):
        for name, fn in fns.items():
            best[name] = min(best[name], loop_time(fn, numbers[name]))
    return best


def blas_info() -> str:
    """One line naming the BLAS NumPy was built with, and the BLAS-related environment."""
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        name = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # older NumPy without mode="dicts", or a different layout
        name = "unknown (see numpy.show_config())"
    env = [
        f"{k}={os.environ[k]}"
        for k in ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
        if k in os.environ
    ]
    return f"BLAS: {name}" + (f" ({', '.join(env)})" if env else "")


def load_average() -> str:
    """The 1-minute load average, as ", load average 1.23": other processes slow the timings."""
    return f", load average {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""


def multiply_adds(config: ModelConfig, n: int) -> int:
    """Multiply-adds of the dense layers in one forward+backward pass (activations not counted).

    Every layer costs N·in·out forward and N·in·out for ∂W; all but the first encoder layer
    cost N·in·out more for the gradient of their input.
    """
    total = 0
    for name, shape in parameters.shapes(config).items():
        if name.endswith(".weight"):
            passes = 2 if name == "encoder.hidden.0.weight" else 3
            total += passes * n * shape[0] * shape[1]
    return total


# --- main ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time the VAE's forward+backward pass in plain Python against NumPy."
    )
    parser.add_argument(
        "--hidden", type=int, nargs="*", help="encoder hidden sizes, e.g. 128 64 (64)"
    )
    parser.add_argument("--latent-dim", type=int, help="latent size K (8)")
    parser.add_argument("--batch-size", type=int, help="images in the batch (16)")
    parser.add_argument("--repeats", type=int, help="NumPy timing repeats, best is kept (10)")
    parser.add_argument("--min-time", type=float, help="seconds of plain-Python calls to time (10)")
    parser.add_argument(
        "--activation", default="relu", choices=sorted(ACTIVATIONS), help="hidden activation"
    )
    parser.add_argument("--beta", type=float, default=1.0, help="KL weight (1.0)")
    parser.add_argument(
        "--quick", action="store_true", help="784-32-4, batch 8: finishes in a few seconds"
    )
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.repeats < 1 or args.batch_size < 1:
        parser.error("--repeats and --batch-size must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # another busy process on the machine already competes with a BLAS using every core
    busy_at_start = hasattr(os, "getloadavg") and os.getloadavg()[0] > 0.5 * (os.cpu_count() or 1)
    config = ModelConfig(
        hidden=tuple(args.hidden), latent_dim=args.latent_dim, activation=args.activation
    )
    n = args.batch_size

    images = load_dataset("mnist-small", "train").x
    if n > len(images):
        sys.exit(f"--batch-size {n} is larger than mnist-small's {len(images)} training images")
    x = images[:n].reshape(n, -1).astype(np.float64)
    eps = np.random.default_rng(1).standard_normal((n, config.latent_dim))

    engine64 = NumpyEngine(config, seed=0, dtype=np.float64)
    engine32 = NumpyEngine(config, seed=0, dtype=np.float32)
    x32, eps32 = x.astype(np.float32), eps.astype(np.float32)
    plain_params = {name: value.tolist() for name, value in engine64.get_weights().items()}
    x_list, eps_list = x.tolist(), eps.tolist()

    sizes = "-".join(str(s) for s in (config.input_dim, *config.hidden, config.latent_dim))
    decoder = "-".join(str(s) for s in (config.latent_dim, *config.decoder_sizes, config.input_dim))
    macs = multiply_adds(config, n)
    print(
        f"model: encoder {sizes}, decoder {decoder}, {config.activation}, Bernoulli; "
        f"{parameters.count(config):,} parameters"
    )
    print(f"batch: {n} mnist-small training images; beta = {args.beta}")
    print(f"work: {macs / 1e6:.2f} M multiply-adds (dense layers) per forward+backward")
    print(
        f"machine: Python {platform.python_version()} ({platform.python_implementation()}), "
        f"NumPy {np.__version__}, {os.cpu_count()} CPUs, {platform.machine()}{load_average()}"
    )
    print(blas_info())

    check(config, plain_params, x_list, eps_list, engine64, x, eps, args.beta)

    plain_best, plain_mean, calls = time_plain(
        lambda: loss_and_grads(config, plain_params, x_list, eps_list, args.beta), args.min_time
    )
    numpy_times = time_numpy(
        {
            "float64": lambda: engine64.loss_and_grads(x, eps, args.beta),
            "float32": lambda: engine32.loss_and_grads(x32, eps32, args.beta),
        },
        args.repeats,
    )
    t64, t32 = numpy_times["float64"], numpy_times["float32"]

    rows = [
        (f"plain Python (best of {calls} calls)", plain_best),
        (f"NumPy float64 (best of {args.repeats})", t64),
        (f"NumPy float32 (best of {args.repeats})", t32),
    ]
    print()
    print(f"{'implementation':<34} {'s per fwd+bwd':>14} {'speed-up':>10}")
    print("-" * 60)
    for label, seconds in rows:
        print(f"{label:<34} {seconds:>14.3e} {plain_best / seconds:>9.0f}x")
    print()
    print(
        f"plain Python: mean {plain_mean:.3f} s per call over {calls} calls, "
        f"{plain_best / macs * 1e9:.1f} ns per multiply-add"
    )
    print(f"times are wall-clock; other processes slow them (now{load_average()[1:]})")
    if busy_at_start:
        print(
            "warning: the machine was busy; a multithreaded BLAS can then be many times slower "
            "than usual (try again when idle, or compare with OPENBLAS_NUM_THREADS=1)"
        )


if __name__ == "__main__":
    main()
