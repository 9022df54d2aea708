"""Everything vaekit must prove on a GPU, in one command of at most 5 minutes on one GPU.

1. the CUDA-only tests (those marked ``cuda``, skipped without a GPU), run by pytest in a
   process of their own: passed, failed and skipped;
2. the reference model (the 784-400-20 MLP, Adam 1e-3, batch 128) trained by vaekit with the
   training set held on the device, against ``benchmarks/example_program.py`` (PyTorch's VAE
   example) on the same device: epochs per second (training + the test −ELBO; the median of the
   epochs after the first, which pays one-time costs), and the host synchronisations in one
   epoch of training steps, counted with ``torch.cuda.set_sync_debug_mode("warn")`` (every
   ``.item()``, ``.cpu()``, blocking copy or stream synchronisation) and calls of
   ``torch.cuda.synchronize``: a loop without per-step round trips has a few per epoch, not one
   or more per step;
3. the conv model (``--arch conv``) in fp32 and in bf16 autocast: epochs per second and the last
   epoch's training and test −ELBO;
4. the importance-weighted bound with k = 5000 on the test set (``vaekit evaluate --iw-samples
   5000``): its time and its share of the device's float32 GEMM rate at the decoder's shapes
   (its product FLOPs counted as ``benchmarks/run.py`` counts them: 2 per multiply-add, the
   encoder once per image and the decoder once per sample), evaluated slice by slice until
   ``--iw-seconds`` are spent and scaled to the whole set;
5. the peak GPU memory (``torch.cuda.max_memory_allocated``) of each.

It prints a table, with the device's name, the torch version and the measured GEMM rate, and
writes the numbers as JSON (``--out``). The data: MNIST from ``../shared/data/mnist`` when
present (``--data-dir``), else the bundled mnist-small. Without a GPU it refuses (exit code 2)
unless ``--device cpu``, which runs the same code on the CPU; ``--quick`` takes tiny sizes, so
that ``--device cpu --quick`` runs in seconds (in CI).

    python benchmarks/gpu.py                          # on a GPU: at most 5 minutes
    python benchmarks/gpu.py --out DIR/gpu-check.json
    python benchmarks/gpu.py --device cpu --quick     # the same code on the CPU, in seconds
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import operator
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from run import (
    SHARED_DATA,
    best_seconds,
    load_data,
    model_matmuls,
    table,
    timed_fit,
    torch_products,
)

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
#: The pytest marker of the tests that need a CUDA GPU (tests/conftest.py skips them without).
CUDA_MARKER = "cuda"
#: Each size: (the full check's, --quick's, what it is). Training examples and test images are
#: at most the data's; the full check fits in 5 minutes on one H100 with MNIST.
SIZES = {
    "epochs": (3, 2, "epochs of the reference model, for vaekit and the example each"),
    "conv_epochs": (2, 1, "epochs of the conv model, for fp32 and bf16 each"),
    "train_examples": (60_000, 512, "training examples (at most the data's)"),
    "test_examples": (10_000, 128, "test examples (at most the data's)"),
    "iw_samples": (5000, 50, "k, the importance samples per test image"),
    "iw_images": (10_000, 16, "test images for the importance-weighted bound"),
    "iw_seconds": (90, 30, "the bound's budget: it stops after the first slice past it"),
    "gemm_size": (8192, 256, "the side of the square product that gives the GEMM rate"),
}
#: Test images per timed slice of the evaluation (a row's bound does not depend on its slice).
IW_SLICE = 1000
TESTS_TIMEOUT_SECONDS = 240
TABLE_HEADER = ["part", "result", "time", "speed", "host syncs", "peak GPU memory (GB)"]
SYNC_WARNING = "called a synchronizing CUDA operation"


# --- the device --------------------------------------------------------------------------------


def pick_device(name: str):
    """The torch device to check; a one-line refusal (exit code 2) for CUDA without a GPU."""
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        print(
            "gpu.py: PyTorch sees no CUDA GPU here; run it on a GPU, or with --device cpu to "
            "run the same code on the CPU",
            file=sys.stderr,
        )
        raise SystemExit(2)
    return torch.device(name)


def synchronize(device) -> None:
    """Wait for the device's queued work (nothing to wait for on the CPU)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


#: FLOPs a GPU computes between two waits while its GEMM rate is measured, so that the wait
#: (some microseconds) costs under 1% even at small shapes.
GEMM_ROUND_FLOPS = 10**11


def gemm_tflops(
    shapes: list[tuple[int, int, int]], device, product: Callable = operator.matmul
) -> float:
    """TFLOP/s of float32 products (rows, inner, cols) on ``device`` (2 FLOPs per multiply-add)
    by ``product`` (default ``@``), the fastest of repeated rounds: on a GPU, each round repeats
    the products until it holds :data:`GEMM_ROUND_FLOPS` and then waits for the device."""
    import torch

    torch.manual_seed(0)
    pairs = [
        (torch.rand(m, k, device=device), torch.rand(k, n, device=device)) for m, k, n in shapes
    ]
    flops = sum(2 * m * k * n for m, k, n in shapes)
    repeats = -(-GEMM_ROUND_FLOPS // flops) if device.type == "cuda" else 1

    def products() -> None:
        for _ in range(repeats):
            for a, b in pairs:
                product(a, b)
        synchronize(device)

    return repeats * flops / best_seconds(products) / 1e12


def device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({os.cpu_count()} cores, {platform.machine()})"


def machine(device, gemm_size: int) -> dict:
    """The device, the software, and the float32 GEMM rate of a square product."""
    import torch

    return {
        "device": device_name(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "gemm_size": gemm_size,
        "gemm_tflops": gemm_tflops([(gemm_size,) * 3], device),
    }


def peak_gpu_gb(device) -> float | None:
    """The most GPU memory tensors held since the last reset, GB (None on the CPU)."""
    import torch

    return torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None


def measured(device, measure: Callable[[], dict]) -> dict:
    """``measure()``'s numbers with its peak GPU memory, ``peak_gpu_gb``, or its error
    (:func:`run_part`)."""
    import torch

    def with_peak() -> dict:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        return {**measure(), "peak_gpu_gb": peak_gpu_gb(device)}

    return run_part(with_peak)


@contextlib.contextmanager
def counting_syncs(device):
    """Count the host's waits for the device inside the block: torch's sync debug mode warns at
    each synchronising operation (``.item()``, ``.cpu()``, blocking copies, stream syncs) and
    ``torch.cuda.synchronize`` is counted by a wrapper. Yields a one-item list holding the count
    so far; on the CPU, where there is no device to wait for, it holds None."""
    import torch

    count: list[int | None] = [None if device.type != "cuda" else 0]
    if device.type != "cuda":
        yield count
        return
    real_synchronize = torch.cuda.synchronize

    def counted_synchronize(*args, **kwargs):
        count[0] += 1
        return real_synchronize(*args, **kwargs)

    def counted_warning(message, category, filename, lineno, file=None, line=None):
        if SYNC_WARNING in str(message):
            count[0] += 1
        else:
            shown(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        warnings.simplefilter("always")  # every sync warns from the same line: count each
        shown, warnings.showwarning = warnings.showwarning, counted_warning
        mode = torch.cuda.get_sync_debug_mode()
        torch.cuda.synchronize = counted_synchronize
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield count
        finally:
            torch.cuda.set_sync_debug_mode(mode)
            torch.cuda.synchronize = real_synchronize


def steady_seconds(seconds: list[float]) -> float:
    """An epoch's time: the median of the epochs after the first (which pays one-time costs:
    kernel choice, uploads), or the only one."""
    return statistics.median(seconds[1:] or seconds)


# --- the parts --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """What every part needs: the device, the data (training and test sets, grey levels) and
    the sizes."""

    device: Any
    data: Any
    sizes: dict[str, int]


def cuda_test_files() -> list[Path]:
    """The test files that mark a test ``cuda``."""
    mark = f"@pytest.mark.{CUDA_MARKER}"
    return sorted(p for p in TESTS.glob("test_*.py") if mark in p.read_text(encoding="utf-8"))


def cuda_tests(check: Check) -> dict:
    """Part 1: the CUDA-only tests, by pytest in a fresh process (its own GPU memory peak)."""
    files = [str(p) for p in cuda_test_files()]
    if not files:
        raise RuntimeError(f"no test in {TESTS} is marked {CUDA_MARKER}")
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", "tests", *files],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=TESTS_TIMEOUT_SECONDS,
    )
    lines = proc.stdout.strip().splitlines()
    if not lines or not lines[-1].startswith("{"):
        raise RuntimeError(f"the tests' process failed:\n{proc.stderr[-3000:]}")
    result = json.loads(lines[-1])
    result.update(files=[Path(f).name for f in files], seconds=time.perf_counter() - started)
    if result["exit_code"] != 0:  # a test failed, or none was collected
        result["output_tail"] = "\n".join(lines[:-1])[-4000:]
    return result


class OutcomeCounts:
    """A pytest plugin that keeps the session's numbers of passed, failed, skipped and errored
    tests."""

    def __init__(self) -> None:
        self.counts = {"passed": 0, "failed": 0, "skipped": 0, "errors": 0}

    def pytest_terminal_summary(self, terminalreporter) -> None:
        stats = terminalreporter.stats
        self.counts = {
            key: len(stats.get(name, []))
            for key, name in (
                ("passed", "passed"),
                ("failed", "failed"),
                ("skipped", "skipped"),
                ("errors", "error"),
            )
        }


def run_tests(files: list[str]) -> dict:
    """In the tests' process: pytest on ``files``, the tests marked cuda alone."""
    import pytest
    import torch

    outcomes = OutcomeCounts()
    code = pytest.main(["-q", "-p", "no:cacheprovider", "-m", CUDA_MARKER, *files], [outcomes])
    peak = torch.cuda.max_memory_allocated() / 1e9 if torch.cuda.is_initialized() else None
    return {**outcomes.counts, "exit_code": int(code), "peak_gpu_gb": peak}


def train_config(check: Check, **settings):
    """The reference training settings (Adam 1e-3, batch 128, seed 0) on the checked device,
    the training set held there."""
    from vaekit.config.settings import TrainConfig

    device = str(check.device)
    return TrainConfig(device=device, data_on_device="yes", seed=0, batch_size=128, **settings)


def vaekit_epochs(check: Check, model, config, *, syncs: bool) -> dict:
    """vaekit's loop: per-epoch seconds and the last losses (:func:`run.timed_fit`), epochs
    per second, and with ``syncs`` the host's waits for the device in the second epoch of
    training steps alone (no test set: its ELBO is read batch by batch)."""
    result = timed_fit(model, config, check.data)
    result["epochs_per_second"] = 1 / steady_seconds(result["seconds"])
    if syncs:
        result["syncs_per_epoch"], result["steps_per_epoch"] = training_syncs(check, model, config)
    return result


def training_syncs(check: Check, model, config) -> tuple[int | None, int]:
    """The host's waits for the device in the second epoch of vaekit's training steps (the
    first also uploads the data), and the steps of an epoch."""
    from vaekit.data.pipeline import TrainingData
    from vaekit.train.loop import fit
    from vaekit.train.start import engine_for

    per_epoch: list[int | None] = []
    with counting_syncs(check.device) as count:
        fit(
            engine_for(model, config),
            replace(config, epochs=2),
            TrainingData(train=check.data.train, test=None),
            on_epoch=lambda *_: per_epoch.append(count[0]),
        )
    second = None if per_epoch[0] is None else per_epoch[1] - per_epoch[0]
    return second, -(-len(check.data.train) // config.batch_size)


def example_epochs(check: Check, epochs: int) -> dict:
    """``benchmarks/example_program.py``'s epochs (its loaders, model, train and test) on the
    same data and device: per-epoch seconds (training + the test −ELBO), the last test −ELBO,
    epochs per second, and the host's waits for the device in one more epoch of training."""
    import example_program as example
    import torch

    device = check.device
    torch.manual_seed(1)
    train_loader, test_loader = example.loaders(
        torch.from_numpy(check.data.train), torch.from_numpy(check.data.test), 128, device
    )
    model = example.VAE().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    seconds = []
    with tempfile.TemporaryDirectory() as out, contextlib.redirect_stdout(io.StringIO()):
        for epoch in range(1, epochs + 1):
            started = time.perf_counter()
            example.train(model, optimizer, train_loader, epoch, device)
            test_loss = example.test(model, test_loader, epoch, Path(out), device)
            seconds.append(time.perf_counter() - started)
        with counting_syncs(device) as count:
            example.train(model, optimizer, train_loader, epochs + 1, device)
    return {
        "seconds": seconds,
        "test_loss": test_loss,
        "epochs_per_second": 1 / steady_seconds(seconds),
        "syncs_per_epoch": count[0],
        "steps_per_epoch": len(train_loader),
    }


def reference_model(check: Check) -> dict:
    """Part 2: the reference MLP, vaekit (data on the device) against the example program."""
    from vaekit.config.settings import ModelConfig

    epochs = check.sizes["epochs"]
    config = train_config(check, epochs=epochs)
    device = check.device
    part = {
        "vaekit": measured(device, lambda: vaekit_epochs(check, ModelConfig(), config, syncs=True)),
        "example": measured(device, lambda: example_epochs(check, epochs)),
    }
    if not has_error(part):
        part["speedup"] = part["vaekit"]["epochs_per_second"] / part["example"]["epochs_per_second"]
    return part


def conv_model(check: Check) -> dict:
    """Part 3: the conv model in fp32 and bf16 autocast, the data on the device."""
    from vaekit.config.settings import ModelConfig

    model = ModelConfig(input_shape=tuple(check.data.train.shape[1:]), arch="conv")
    epochs = check.sizes["conv_epochs"]
    return {
        precision: measured(
            check.device,
            lambda p=precision: vaekit_epochs(
                check, model, train_config(check, epochs=epochs, precision=p), syncs=False
            ),
        )
        for precision in ("fp32", "bf16")
    }


def evaluation(check: Check) -> dict:
    """Part 4: the k-sample importance-weighted bound on the test images, with the reference
    model after one epoch (the time does not depend on the weights)."""
    return measured(check.device, lambda: timed_evaluation(check))


def timed_evaluation(check: Check) -> dict:
    """L_k slice by slice of the test images until the budget is spent: seconds, images, NLL
    (nats), the product FLOPs, and their rate as a share of the GEMM rate at the shapes of the
    decoder's calls (recorded as they happen)."""
    import numpy as np

    from vaekit.config.settings import ModelConfig
    from vaekit.data.pipeline import TrainingData
    from vaekit.measure.evaluation import iwae_log_likelihood
    from vaekit.train.loop import fit
    from vaekit.train.start import engine_for

    sizes, model = check.sizes, ModelConfig()
    config = train_config(check, epochs=1)
    engine = engine_for(model, config)
    fit(engine, config, TrainingData(train=check.data.train, test=None))
    rows_per_call = record_decoder_rows(engine)
    images = check.data.test[: sizes["iw_images"]]
    bounds, seconds, k = [], 0.0, sizes["iw_samples"]
    for start in range(0, len(images), IW_SLICE):
        started = time.perf_counter()
        bounds.append(iwae_log_likelihood(engine, images[start : start + IW_SLICE], k, seed=0))
        seconds += time.perf_counter() - started
        if seconds > sizes["iw_seconds"]:
            break
    done = sum(len(b) for b in bounds)
    flops = done * iwae_flops_per_image(k)
    decoder_rate = decoder_gemm_tflops(max(rows_per_call), check.device)
    return {
        "k": k,
        "images": done,
        "seconds": seconds,
        "seconds_for_all": seconds * len(images) / done,
        "all_images": len(images),
        "nll": float(-np.concatenate(bounds).mean()),
        "tflop": flops / 1e12,
        "decoder_rows_per_call": max(rows_per_call),
        "decoder_gemm_tflops": decoder_rate,
        "share_of_decoder_gemm_rate": flops / seconds / 1e12 / decoder_rate,
    }


def decoder_gemm_tflops(rows: int, device) -> float:
    """The GEMM rate at the decoder's shapes for ``rows`` rows a call: ``@`` on a GPU; on the CPU
    the faster of torch's libraries (``torch_products``: MKL's sgemm behind ``@`` and oneDNN, which
    the evaluation's decoder multiplies with there), as ``benchmarks/run.py`` takes its
    roofline."""
    shapes = decoder_products(rows)
    if device.type != "cpu":
        return gemm_tflops(shapes, device)
    return max(gemm_tflops(shapes, device, product) for product in torch_products().values())


def record_decoder_rows(engine) -> list[int]:
    """A list that receives the rows (samples × images) of each of the engine's decoder calls
    in ``log_weights`` from now on."""
    rows: list[int] = []
    log_weights = engine.log_weights

    def recorded(x, posterior, eps, y=None):
        rows.append(eps.shape[0] * eps.shape[1])  # eps: (samples, images, noise dimensions)
        return log_weights(x, posterior, eps, y)

    engine.log_weights = recorded
    return rows


def forward_products(rows: int) -> tuple[list, list]:
    """The (rows, inner, cols) of the reference model's encoder and decoder forward products
    (benchmarks/run.py's ``model_matmuls``: x→h and the two heads, then z→g and g→logits)."""
    forward = model_matmuls(rows)[:5]
    return forward[:3], forward[3:]


def decoder_products(rows: int) -> list[tuple[int, int, int]]:
    return forward_products(rows)[1]


def iwae_flops_per_image(k: int) -> int:
    """Product FLOPs of L_k for one image: the encoder once, the decoder for each sample."""
    encoder, decoder = forward_products(1)
    return sum(2 * m * n * p for m, n, p in encoder) + k * sum(2 * m * n * p for m, n, p in decoder)


# --- the report ------------------------------------------------------------------------------


PARTS: dict[str, Callable[[Check], dict]] = {
    "tests": cuda_tests,
    "reference_model": reference_model,
    "conv": conv_model,
    "evaluation": evaluation,
}


def run_part(measure: Callable[[], dict]) -> dict:
    """A measurement's numbers, or its error in one line (its traceback on stderr): a GPU is
    lent for minutes, so the others still run."""
    try:
        return measure()
    except Exception as exc:
        traceback.print_exc()
        return {"error": f"{type(exc).__name__}: {exc}".splitlines()[0]}


def has_error(value: Any) -> bool:
    """Whether a measurement in ``value`` (a part's numbers, or the report) failed."""
    if not isinstance(value, dict):
        return False
    return "error" in value or any(has_error(v) for v in value.values())


def gb(value: float | None) -> str:
    return "n/a (cpu)" if value is None else f"{value:.2f}"


def syncs(result: dict) -> str:
    count = result["syncs_per_epoch"]
    where = "n/a (cpu)" if count is None else f"{count}"
    return f"{where} in an epoch of {result['steps_per_epoch']} steps"


def rows(report: dict) -> list[list[str]]:
    """The table's rows, a failed part's saying why."""
    out = []
    tests = report["tests"]
    if "error" in tests:
        out.append(failed_row("CUDA-only tests", tests))
    else:
        counts = ", ".join(f"{tests[k]} {k}" for k in ("passed", "failed", "skipped", "errors"))
        seconds = f"{tests['seconds']:.1f} s"
        out.append(["CUDA-only tests", counts, seconds, "", "", gb(tests["peak_gpu_gb"])])
    out += reference_rows(report["reference_model"])
    for precision, result in conv_results(report["conv"]):
        out.append(training_row(f"conv model, {precision}", result))
    out.append(evaluation_row(report["evaluation"]))
    return out


def reference_rows(part: dict) -> list[list[str]]:
    if "error" in part:
        return [failed_row("reference MLP", part)]
    vaekit = training_row("reference MLP, vaekit (data on the device)", part["vaekit"])
    if "speedup" in part:
        vaekit[3] += f", {part['speedup']:.2f}× the example's"
    return [vaekit, training_row("reference MLP, example program", part["example"])]


def conv_results(part: dict) -> list[tuple[str, dict]]:
    return [("fp32 and bf16", part)] if "error" in part else list(part.items())


def failed_row(name: str, result: dict) -> list[str]:
    return [name, f"failed: {result['error']}", "", "", "", ""]


def training_row(name: str, result: dict) -> list[str]:
    if "error" in result:
        return failed_row(name, result)
    losses = f"test −ELBO {result['test_loss']:.2f} nats"
    if "loss" in result:
        losses = f"training −ELBO {result['loss']:.2f}, " + losses
    return [
        name,
        losses,
        f"{steady_seconds(result['seconds']):.3f} s/epoch",
        f"{result['epochs_per_second']:.2f} epochs/s",
        syncs(result) if "syncs_per_epoch" in result else "",
        gb(result["peak_gpu_gb"]),
    ]


def evaluation_row(part: dict) -> list[str]:
    name = "importance-weighted bound"
    if "error" in part:
        return failed_row(name, part)
    scaled = "" if part["images"] == part["all_images"] else f" (on {part['images']:,}, scaled)"
    return [
        f"{name}, k = {part['k']}",
        f"NLL {part['nll']:.2f} nats, {part['all_images']:,} test images",
        f"{part['seconds_for_all']:.1f} s{scaled}",
        f"{100 * part['share_of_decoder_gemm_rate']:.0f}% of the GEMM rate at the decoder's "
        f"shapes ({part['decoder_gemm_tflops']:.3g} TFLOP/s, {part['decoder_rows_per_call']:,} "
        "rows a call)",
        "",
        gb(part["peak_gpu_gb"]),
    ]


def caption(report: dict) -> str:
    m = report["machine"]
    cuda = f", CUDA {m['cuda']}" if m["cuda"] else ""
    return (
        f"GPU check on {m['device']}: torch {m['torch']}{cuda}; float32 GEMM rate "
        f"{m['gemm_tflops']:.3g} TFLOP/s ({m['gemm_size']}³ torch.mm, matmul precision "
        f"{m['float32_matmul_precision']}); data {report['data']}, "
        f"{report['train_examples']:,} training and {report['test_examples']:,} test examples"
    )


def failed(report: dict) -> bool:
    """Whether a measurement failed, or pytest did (a test failed, or none was collected)."""
    return has_error(report) or report["tests"]["exit_code"] != 0


# --- the command ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: seconds, for CI")
    parser.add_argument("--data-dir", type=Path, default=SHARED_DATA)
    parser.add_argument(
        "--out", type=Path, default=Path("gpu-check.json"), help="the JSON file to write"
    )
    for name, (full, quick, what) in SIZES.items():
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, type=int, help=f"{what}: {full}, {quick} with --quick")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("worker_args", nargs="*", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def chosen_sizes(args: argparse.Namespace) -> dict[str, int]:
    sizes = {}
    for name, (full, quick, _) in SIZES.items():
        given = getattr(args, name)
        sizes[name] = given if given is not None else quick if args.quick else full
        if sizes[name] < 1:
            print(f"gpu.py: --{name.replace('_', '-')} must be at least 1", file=sys.stderr)
            raise SystemExit(2)
    return sizes


def load(args: argparse.Namespace, sizes: dict[str, int]) -> tuple[str, Any]:
    """MNIST from ``--data-dir`` when there (never with --quick), else mnist-small; cut to the
    sizes."""
    from vaekit.data import dataset_status
    from vaekit.data.pipeline import TrainingData

    present = {d["name"]: d["present"] for d in dataset_status(args.data_dir)}
    name = "mnist" if present["mnist"] and not args.quick else "mnist-small"
    data = load_data(name, str(args.data_dir))
    train, test = data.train[: sizes["train_examples"]], data.test[: sizes["test_examples"]]
    return name, TrainingData(train=train, test=test)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker == "tests":
        print(json.dumps(run_tests(args.worker_args)))
        return 0
    sizes = chosen_sizes(args)
    if not args.out.parent.resolve().is_dir():
        print(f"gpu.py: --out {args.out}: {args.out.parent} is not a directory", file=sys.stderr)
        return 2
    device = pick_device(args.device)
    started = time.perf_counter()
    name, data = load(args, sizes)
    check = Check(device, data, sizes)
    report: dict[str, Any] = {
        "machine": machine(device, sizes["gemm_size"]),
        "data": name,
        "train_examples": len(data.train),
        "test_examples": len(data.test),
        "sizes": sizes,
    }
    for part, measure in PARTS.items():
        report[part] = run_part(lambda m=measure: m(check))
    report["seconds"] = time.perf_counter() - started
    print(caption(report) + ":\n")
    table(TABLE_HEADER, rows(report))
    print(f"(this check took {report['seconds']:.0f} s; the numbers are in {args.out})")
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if failed(report) else 0


if __name__ == "__main__":
    sys.exit(main())
