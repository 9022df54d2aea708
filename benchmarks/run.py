"""vaekit's speed suite: training and evaluation against a conventional PyTorch loop and the
machine's GEMM rate, in one run.

Every measurement runs in its own process (so each reports its own peak RSS and none inherits
another's threads or caches), and the three training loops take turns, round by round, so that a
machine that speeds up or slows down during the run affects them alike. Prints:

1. the machine's float32 GEMM rate: a large square product, and the model's own matrix products
   (forward and backward, batch 128) with each library PyTorch can use (MKL's sgemm behind
   ``torch.mm``, and oneDNN) and with NumPy's BLAS;
2. the model's FLOP count per training example, per test example and per epoch;
3. the main table: the reference model (784-400-20, ReLU, Bernoulli on grey levels, Adam 1e-3,
   batch 128), one epoch of training plus the test ELBO: the conventional loop (a DataLoader
   over a TensorDataset, an ``nn.Module``, ``F.binary_cross_entropy`` on sigmoid outputs, as the
   PyTorch VAE example), vaekit's torch engine and its NumPy engine: samples/s, seconds per
   epoch, speed-up over the conventional loop, % of the GEMM roofline, peak RSS;
4. scaling: samples/s against batch size (32…1024) and hidden width (200…1000);
5. the importance-weighted evaluation (k = 5000 on 1,000 test images, ``--eval-images``) as a
   share of the GEMM roofline at the decoder's shapes (measured before and after each run), with
   waiting threads asleep (as the command line runs it) and spinning, medians of 3 runs taking
   turns; the rate of each part of its chunks repeated alone by the same workers (the decoder,
   then with the likelihood, then the engine's whole chunk); and a whole ``vaekit train`` run,
   with time and peak RSS;
6. start-up: ``vaekit --version``, ``--help`` and ``presets`` in fresh interpreters (median of 5
   runs; 1 with --quick), from ``benchmarks/startup.py``;
7. the whole command: ``vaekit train`` (checkpoints and figures as by default) against
   ``benchmarks/example_program.py`` (what PyTorch's VAE example does, written here), 3 and 10
   epochs of MNIST, alternating fresh processes, medians of 3; and where vaekit's time goes,
   part by part (interpreter, torch import, data, engine, steps, test ELBO, figures,
   checkpoints), the computing parts as shares of the GEMM roofline;
8. several trainings at once (one per core, as in a sweep): the libraries' default threads (one
   per core in each run) against one thread each, beside one run alone, for both engines;
9. ``benchmarks/busy.py``'s tables: where two threads pay, the busy-machine table (idle, one and
   two CPU hogs; the default and the candidates) and the demo against its steps.

Roofline: an epoch's model FLOPs divided by the time the model's matrix products alone take at
the best measured rate (the fastest library, at the model's shapes): the time an epoch would
take if everything but the GEMMs were free. % of roofline = that time / the measured time.

    python benchmarks/run.py                     # MNIST from ../shared/data (about 6 minutes)
    python benchmarks/run.py --data-dir DIR
    python benchmarks/run.py --quick             # the bundled mnist-small, under a minute
    python benchmarks/run.py --only whole-command   # section 7 alone (about 6 minutes)
    python benchmarks/run.py --only per-epoch       # sections 1 to 3 alone (about 90 s)
    python benchmarks/run.py --only side-by-side    # section 8 alone
    python benchmarks/run.py --only evaluation      # section 5's evaluation alone
    python benchmarks/run.py --only busy            # section 9 alone (about 25 minutes)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REFERENCE = {"hidden": (400,), "latent_dim": 20}


# --- measurements, each run in a worker process --------------------------------------------------


def processor_name() -> str:
    """The CPU's model name as the kernel reports it (``/proc/cpuinfo``), else the platform's."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    return platform.processor() or platform.machine()


def peak_rss_gb() -> float:
    """This process's peak resident set size, GB (Linux reports KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def percent_down(share: float) -> str:
    """``share`` in percent, rounded down to a tenth of a point, so that a share just under a
    target (at least) never prints as the target: 0.7996 is 79.9, not 80.0. Verdicts are of
    what is printed."""
    tenths = math.floor(round(share * 1000, 6))  # round first: 0.8 * 1000 is 800.0000000000001
    return f"{tenths // 10}.{tenths % 10}"


def ratio_up(ratio: float) -> str:
    """``ratio`` rounded up to a hundredth, so that a ratio just over a target (at most) never
    prints as the target: 1.3004 is 1.31, not 1.30. Verdicts are of what is printed."""
    hundredths = math.ceil(round(ratio * 100, 6))
    return f"{hundredths // 100}.{hundredths % 100:02d}"


def at_least(share: float, target: float) -> str:
    """``share`` in percent (:func:`percent_down`) and its verdict against a target of at least
    ``target`` percent, judged on the printed number: "79.9% (missed)"."""
    printed = percent_down(share)
    return f"{printed}% ({'met' if float(printed) >= target else 'missed'})"


def at_most(ratio: float, target: float) -> str:
    """``ratio`` (:func:`ratio_up`) and its verdict against a target of at most ``target``,
    judged on the printed number: "1.31 (missed)"."""
    printed = ratio_up(ratio)
    return f"{printed} ({'met' if float(printed) <= target else 'missed'})"


def model_config(hidden: int = 400):
    from vaekit.config.settings import ModelConfig

    return ModelConfig(hidden=(hidden,), latent_dim=REFERENCE["latent_dim"])


def load_data(name: str, data_dir: str):
    from vaekit.config.settings import TrainConfig
    from vaekit.data.pipeline import TrainingData

    return TrainingData.load(TrainConfig(data=name, data_dir=data_dir))


def best_seconds(fn: Callable[[], object], min_time: float = 0.3) -> float:
    """The fastest of repeated calls' average time, seconds (after one warm-up call)."""
    fn()
    best = float("inf")
    for _ in range(3):
        calls, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < min_time / 3:
            fn()
            calls += 1
        best = min(best, elapsed / calls)
    return best


def model_matmuls(batch: int, hidden: int = 400, latent: int = 20, dim: int = 784) -> list:
    """The (rows, inner, cols) of every matrix product in one training step of the MLP VAE:
    forward (x→h, two heads, z→g, g→logits), then per layer the weight gradient and, except for
    the first layer, the input gradient."""
    layers = [(dim, hidden), (hidden, latent), (hidden, latent), (latent, hidden), (hidden, dim)]
    shapes = [(batch, n_in, n_out) for n_in, n_out in layers]
    for i, (n_in, n_out) in enumerate(layers):
        shapes.append((n_out, batch, n_in))  # ∂L/∂W = gᵀ·h
        if i > 0:
            shapes.append((batch, n_out, n_in))  # ∂L/∂h = g·W
    return shapes


def flops_per_example() -> dict:
    """Matrix-product FLOPs (2 per multiply-add) per training example and per test example
    (:mod:`vaekit.model.flops`; the reference model: 3.280 and 1.302 MFLOP)."""
    from vaekit.model import flops

    config = model_config()
    return {"train": flops.training_flops(config, 128), "test": flops.evaluation_flops(config)}


def torch_products() -> dict[str, Callable]:
    """The float32 products a·b that torch computes on the CPU, by library: MKL's sgemm behind
    ``@``, and oneDNN's matmul where this build has it (vaekit's dense layers multiply with it
    without gradients, and in training on CPUs that are not Intel's)."""
    from vaekit.engines.torch.dense import onednn_linear, onednn_matmul_available

    products: dict[str, Callable] = {"torch.mm (MKL)": lambda a, b: a @ b}
    if onednn_matmul_available():
        products["oneDNN"] = lambda a, b: onednn_linear(a, b.T, None)
    return products


def worker_gemm(args: dict) -> dict:
    """GFLOP/s of float32 matrix products: square 2048, and the model's step at batch 128."""
    import numpy as np
    import torch

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    shapes = model_matmuls(128)
    step_flops = sum(2 * a * b * c for a, b, c in shapes)
    products: dict[str, Callable | None] = {**torch_products(), "numpy (OpenBLAS)": None}
    rates: dict[str, dict] = {}
    for name, product in products.items():
        if name.startswith("numpy"):
            pairs = [
                (rng.random((m, k), dtype=np.float32), rng.random((k, n), dtype=np.float32))
                for m, k, n in shapes
            ]
            big = (rng.random((2048, 2048), dtype=np.float32),) * 2
            product = np.matmul
        else:
            pairs = [(torch.rand(m, k), torch.rand(k, n)) for m, k, n in shapes]
            big = (torch.rand(2048, 2048),) * 2

        def step(pairs=pairs, product=product):
            for a, b in pairs:
                product(a, b)

        rates[name] = {
            "square": 2 * 2048**3 / best_seconds(lambda b=big, p=product: p(*b)) / 1e9,
            "model": step_flops / best_seconds(step) / 1e9,
        }
    return {"rates": rates, "threads": torch.get_num_threads()}


def conventional_epochs(args: dict) -> dict:
    """The widely copied PyTorch VAE example's loop: DataLoader, nn.Module, BCE on sigmoid."""
    import torch
    import torch.nn.functional as F
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    data = load_data(args["data"], args["data_dir"])
    hidden = args.get("hidden", 400)

    class VAE(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1 = nn.Linear(784, hidden)
            self.fc21 = nn.Linear(hidden, 20)
            self.fc22 = nn.Linear(hidden, 20)
            self.fc3 = nn.Linear(20, hidden)
            self.fc4 = nn.Linear(hidden, 784)

        def forward(self, x):
            h = F.relu(self.fc1(x.view(-1, 784)))
            mu, logvar = self.fc21(h), self.fc22(h)
            z = mu + torch.randn_like(logvar) * torch.exp(0.5 * logvar)
            return torch.sigmoid(self.fc4(F.relu(self.fc3(z)))), mu, logvar

    def loss_function(recon_x, x, mu, logvar):
        bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
        return bce - 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())

    torch.manual_seed(0)
    model = VAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    train = TensorDataset(torch.from_numpy(data.train.reshape(len(data.train), -1)))
    test = TensorDataset(torch.from_numpy(data.test.reshape(len(data.test), -1)))
    train_loader = DataLoader(train, batch_size=128, shuffle=True)
    test_loader = DataLoader(test, batch_size=128)
    seconds, test_loss = [], 0.0
    for _ in range(args["epochs"]):
        started = time.perf_counter()
        model.train()
        train_loss = 0.0
        for (x,) in train_loader:
            optimizer.zero_grad()
            recon, mu, logvar = model(x)
            loss = loss_function(recon, x, mu, logvar)
            loss.backward()
            train_loss += loss.item()
            optimizer.step()
        model.eval()
        test_loss = 0.0
        with torch.no_grad():
            for (x,) in test_loader:
                recon, mu, logvar = model(x)
                test_loss += loss_function(recon, x, mu, logvar).item()
        seconds.append(time.perf_counter() - started)
    return {
        "seconds": seconds,
        "test_loss": test_loss / len(test),
        "train": len(train),
        "test": len(test),
    }


def vaekit_epochs(args: dict) -> dict:
    """vaekit's training loop (``fit``: training and the test ELBO, no checkpoints or figures),
    with ``threads`` (default None: one per core, as the conventional loop and the roofline)."""
    from vaekit.config.settings import TrainConfig

    data = load_data(args["data"], args["data_dir"])
    config = TrainConfig(
        data=args["data"],
        engine=args["engine"],
        epochs=args["epochs"],
        seed=0,
        batch_size=128,
        threads=args.get("threads"),
    )
    return timed_fit(model_config(args.get("hidden", 400)), config, data)


def timed_fit(model, config, data) -> dict:
    """``fit`` of a fresh engine, after one step of another to warm up: the seconds of each
    epoch (training + the test ELBO), the last epoch's training and test −ELBO (nats per
    example), and the numbers of training and test examples."""
    from vaekit.train.loop import fit
    from vaekit.train.start import engine_for

    engine_for(model, config).train_step(data.train[: config.batch_size], 1.0)
    history = fit(engine_for(model, config), config, data)
    return {
        "seconds": [record["seconds"] for record in history],
        "loss": history[-1]["loss"],
        "test_loss": history[-1]["test_loss"],
        "train": len(data.train),
        "test": len(data.test),
    }


def worker_train(args: dict) -> dict:
    measure = conventional_epochs if args["engine"] == "conventional" else vaekit_epochs
    return measure(args)


def worker_scaling(args: dict) -> dict:
    """samples/s of training steps alone for each (batch size, hidden width)."""
    import numpy as np

    from vaekit.config.settings import TrainConfig
    from vaekit.train.start import engine_for

    data = load_data(args["data"], args["data_dir"]).train
    samples = min(args["samples"], len(data))
    rates = []
    for batch, hidden in args["grid"]:
        config = TrainConfig(engine=args["engine"], batch_size=batch, seed=0)
        engine = engine_for(model_config(hidden), config)
        engine.train_step(data[:batch], 1.0)
        order = np.random.default_rng(0).permutation(len(data))[:samples]
        started = time.perf_counter()
        for start in range(0, samples, batch):
            engine.train_step(data[order[start : start + batch]], 1.0)
        rates.append(samples / (time.perf_counter() - started))
    return {"rates": rates}


def worker_iwae(args: dict) -> dict:
    """The k-sample importance-weighted bound on the test set, with the reference model after
    one epoch of training (the time does not depend on the weights), as ``vaekit evaluate``
    computes it (one worker thread per core), and the share of its workers' time spent in the
    decoder with its likelihood (``reconstruction_nll``: for this model the product by input of
    :mod:`vaekit.engines.torch.bernoulli_head`)."""
    from vaekit.config.settings import TrainConfig
    from vaekit.engines.threads import usable_cores
    from vaekit.measure.evaluation import iwae_log_likelihood
    from vaekit.model import flops
    from vaekit.train.loop import fit
    from vaekit.train.start import engine_for

    data = load_data(args["data"], args["data_dir"])
    config = TrainConfig(data=args["data"], engine="torch", epochs=1, seed=0)
    engine = engine_for(model_config(), config)
    fit(engine, config, type(data)(train=data.train, test=None))
    test = data.test[: args["images"]]
    spent = {"decoder": 0.0}

    def timed(part: str, fn: Callable) -> Callable:
        def call(*a, **kw):
            started = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                spent[part] += time.perf_counter() - started  # summed over the workers

        return call

    engine.model.reconstruction_nll = timed("decoder", engine.model.reconstruction_nll)
    workers = usable_cores()
    started = time.perf_counter()
    bound = iwae_log_likelihood(engine, test, args["k"], seed=0, threads=workers)
    seconds = time.perf_counter() - started
    work = len(test) * flops.evaluation_flops(engine.config, samples=args["k"])
    return {
        "seconds": seconds,
        "nll": float(-bound.mean()),
        "n": len(test),
        "flops": work,
        "threads": workers,
        "spent": {part: total / (workers * seconds) for part, total in spent.items()},
    }


#: The parts of an evaluation's chunk that :func:`worker_iwae_parts` times alone, each also
#: doing what the part before it does.
IWAE_PARTS = {
    "decoder": "the decoder (its two layers)",
    "likelihood": "the decoder with its likelihood (one product by input, then a pass)",
    "chunk": "the engine's whole chunk (log_weights: latents, decoder, likelihood, densities)",
}


def worker_iwae_parts(args: dict) -> dict:
    """GFLOP/s of the decoder's products (as :func:`worker_iwae` counts them) while one worker
    thread per core, each computing with one thread as the evaluation's workers do, repeats
    one part of a chunk (IWAE_PARTS) ``repeats`` times, the parts in turn (in ``order``). The
    chunk is the evaluation's first decoder call at k = 5000 (:func:`iwae_chunks`: one test
    image's 5,000 samples). The reference model as initialised: the parts' time does not depend
    on the weights."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    import torch

    from vaekit.config.settings import TrainConfig
    from vaekit.engines.memory import keep_freed_memory
    from vaekit.engines.threads import cpu_threads, one_thread_in_this_thread, usable_cores
    from vaekit.measure.evaluation import iwae_batch_rows, iwae_chunks
    from vaekit.model import flops
    from vaekit.train.start import engine_for

    data = load_data(args["data"], args["data_dir"])
    engine = engine_for(model_config(), TrainConfig(data=args["data"], engine="torch", seed=0))
    config, model = engine.config, engine.model
    batch = data.test[: iwae_batch_rows(config, args["k"])]
    rows, first = iwae_chunks(config, args["k"], len(batch))[0]
    x, samples = batch[rows], len(range(args["k"])[first])
    eps = np.random.default_rng(0).standard_normal(
        (samples, len(x), config.noise_dim), dtype=np.float32
    )
    posterior = engine.encode(x)
    x_t = torch.from_numpy(x.reshape(len(x), -1))
    model.eval()
    eps_t, posterior_t = torch.from_numpy(eps), tuple(map(torch.from_numpy, posterior))
    with torch.no_grad():
        z = model.latents(x_t, None, eps_t, posterior_t).z
    parts = {
        "decoder": lambda: model._decoder(z.reshape(-1, z.shape[-1]), None),
        "likelihood": lambda: model.reconstruction_nll(x_t, z),
        "chunk": lambda: engine.log_weights(x, posterior, eps),
    }
    workers = usable_cores()
    work = workers * args["repeats"] * samples * len(x)
    work *= sum(p.flops for p in flops.networks(config)["decoder"])

    def repeat(part: Callable) -> None:
        with torch.no_grad():  # grad mode is per thread
            for _ in range(args["repeats"]):
                part()

    keep_freed_memory()  # as the evaluation does
    rates = {}
    with (
        cpu_threads(1),
        ThreadPoolExecutor(workers, initializer=one_thread_in_this_thread) as pool,
    ):
        for name in args["order"]:
            part = parts[name]
            with torch.no_grad():
                part()  # its first call, here, out of the timing
            started = time.perf_counter()
            list(pool.map(repeat, [part] * workers))
            rates[name] = work / (time.perf_counter() - started) / 1e9
    return {"rates": rates, "threads": workers, "chunk": [samples, len(x)]}


def worker_decoder_rate(args: dict) -> dict:
    """The best float32 GEMM rate, GFLOP/s, at the decoder's shapes (400 → 784, 334 to 5,344
    rows) with one thread per core, by the faster of torch's libraries (:func:`torch_products`;
    the evaluation's decoder multiplies with oneDNN): at each shape and library the best of
    three repeats of ``rate_seconds`` / 3."""
    import torch

    from vaekit.engines.threads import usable_cores

    torch.set_num_threads(usable_cores())
    rates = []
    for rows in (334, 1336, 2672, 5344):
        h, w = torch.randn(rows, 400), torch.randn(784, 400)
        for product in torch_products().values():
            seconds = best_seconds(
                lambda h=h, w=w, p=product: p(h, w.T), min_time=args["rate_seconds"]
            )
            rates.append(2 * rows * 400 * 784 / seconds / 1e9)
    return {"rate": max(rates)}


def worker_cli(args: dict) -> dict:
    """A whole ``vaekit train`` run (checkpoints and figures every epoch), in this process."""
    from vaekit import cli

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        code = cli.main(
            [
                "train",
                "--data",
                args["data"],
                "--data-dir",
                args["data_dir"],
                "--epochs",
                str(args["epochs"]),
                "--out",
                str(Path(tmp) / "run"),
            ]
        )
        seconds = time.perf_counter() - started
    return {"code": code, "seconds": seconds}


def worker_sizes(args: dict) -> dict:
    """The numbers of training and test examples of a data set."""
    data = load_data(args["data"], args["data_dir"])
    return {"train": len(data.train), "test": len(data.test)}


WORKERS = {
    "gemm": worker_gemm,
    "train": worker_train,
    "scaling": worker_scaling,
    "iwae": worker_iwae,
    "decoder_rate": worker_decoder_rate,
    "iwae_parts": worker_iwae_parts,
    "cli": worker_cli,
    "sizes": worker_sizes,
}


def run_worker(kind: str, env: dict | None = None, **args) -> dict:
    """Run one measurement in a fresh Python process (``env``: its environment, default this
    one's); its result, with its peak RSS."""
    return run_workers_at_once(kind, [env or dict(os.environ)], **args)[0]


def run_workers_at_once(kind: str, envs: list[dict], **args) -> list[dict]:
    """Run one measurement in as many fresh processes as ``envs`` (their environments), all at
    the same time; their results, in order."""
    argv = [sys.executable, __file__, "--worker", kind, json.dumps(args)]
    procs = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for env in envs
    ]
    outputs = [proc.communicate() for proc in procs]
    for proc, (_, stderr) in zip(procs, outputs, strict=True):
        if proc.returncode != 0:
            sys.exit(f"the {kind} measurement failed:\n{stderr[-3000:]}")
    return [json.loads(stdout.strip().splitlines()[-1]) for stdout, _ in outputs]


# --- several runs at once -----------------------------------------------------------------------


def side_by_side(common: dict, epochs: int) -> None:
    """Section 8: as many trainings at once as the machine has cores (a sweep, say), each with
    one thread per core against one thread each (``--threads 1``, the default), beside one run
    alone."""
    cores = os.cpu_count() or 1
    rows = []
    for engine in ("torch", "numpy"):
        for runs, count, threads in (
            (1, None, f"{cores} (one per core)"),
            (cores, None, f"{cores} (one per core)"),
            (cores, 1, "1 (`--threads 1`, the default)"),
        ):
            results = run_workers_at_once(
                "train", [dict(os.environ)] * runs, engine=engine, epochs=epochs, threads=count,
                **common,
            )  # fmt: skip
            seconds = statistics.median(s for r in results for s in r["seconds"])
            rows.append(
                [engine, str(runs), threads, f"{seconds:.2f}", f"{60 * runs / seconds:.1f}"]
            )
    print(
        f"several trainings at once ({cores} cores; the per-epoch model; median s/epoch over "
        f"every run's {epochs} epochs):\n"
    )
    table(["engine", "runs at once", "threads each", "s/epoch", "epochs/min, all runs"], rows)


# --- the whole command against the example program, each run a fresh process ------------------


def timed_run(argv: list[str]) -> float:
    """Wall time, seconds, of one command in a fresh process (it must succeed)."""
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - started


def vaekit_train(data: str, data_dir: str, epochs: int, out: Path, *extra: str) -> list[str]:
    """The ``vaekit train`` command line, defaults otherwise (checkpoints and figures)."""
    from startup import vaekit_command

    flags = ["--data", data, "--data-dir", data_dir, "--epochs", str(epochs), "--out", str(out)]
    return vaekit_command() + ["train", *flags, "--quiet", "--force", *extra]


def example_program(image_dir: str, epochs: int, out: Path) -> list[str]:
    """The command line of ``benchmarks/example_program.py`` (PyTorch's VAE example, redone)."""
    script = Path(__file__).resolve().parent / "example_program.py"
    flags = ["--epochs", str(epochs), "--data-dir", image_dir, "--out", str(out)]
    return [sys.executable, str(script), *flags]


def epoch_seconds(run: Path) -> list[float]:
    """The per-epoch ``seconds`` (training + the test ELBO) from a run's metrics.jsonl."""
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["seconds"] for line in lines if line.strip()]


def whole_command(data: str, data_dir: str, epoch_counts: list[int], rounds: int) -> None:
    """The whole ``vaekit train`` command against the example program, alternating (which goes
    first swaps every round), median wall seconds of ``rounds`` runs each; then where vaekit's
    time goes for the first epoch count."""
    import vaekit.data

    image_dir = str(
        Path(vaekit.data.__file__).parent / "mnist_small"
        if data == "mnist-small"
        else Path(data_dir) / "mnist"
    )
    times: dict[tuple[str, int], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        commands = {
            "vaekit": lambda e: vaekit_train(data, data_dir, e, Path(tmp) / "run"),
            "example": lambda e: example_program(image_dir, e, Path(tmp) / "example"),
        }
        for turn in range(rounds):
            for epochs in epoch_counts:
                for name in sorted(commands, reverse=turn % 2 == 1):
                    seconds = timed_run(commands[name](epochs))
                    times.setdefault((name, epochs), []).append(seconds)
        print(
            f"the whole command against PyTorch's VAE example (benchmarks/example_program.py), "
            f"{data}, wall seconds, median of {rounds} alternating runs in fresh processes:\n"
        )
        rows = []
        for epochs in epoch_counts:
            ours, theirs = (statistics.median(times[name, epochs]) for name in commands)
            rows.append([str(epochs), f"{ours:.1f}", f"{theirs:.1f}", at_most(ours / theirs, 0.5)])
        table(["epochs", "vaekit train", "example program", "ratio (target ≤ 0.5)"], rows)
        breakdown(data, data_dir, epoch_counts[0], Path(tmp), rounds)


#: Runs ``vaekit ARGV`` in this process with a stopwatch on each part of a training run, and
#: prints the parts' seconds as JSON (each wrapped function is the one the command calls).
PARTS = """
import json, sys, time
began = time.perf_counter()
import torch
imported = time.perf_counter()
from vaekit.cli import main, training
from vaekit.data.pipeline import TrainingData
from vaekit.draw import gallery
from vaekit.engines.torch import TorchEngine
from vaekit.runs import checkpoint
from vaekit.train import loop, start
from vaekit.train.write_behind import WriteBehind

spent = {}


def timing(part, function):
    def timed(*args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            spent[part] = spent.get(part, 0.0) + time.perf_counter() - started
    return timed


training.load_raw = timing("data load", training.load_raw)
TrainingData.prepare = classmethod(timing("data load", TrainingData.prepare.__func__))
start.engine_for = timing("engine construction", start.engine_for)
TorchEngine.train_step = timing("training steps", TorchEngine.train_step)
loop.held_out_scores = timing("test ELBO each epoch", loop.held_out_scores)
for name in ("draw_samples", "draw_reconstructions"):
    setattr(gallery, name, timing("figures each epoch", getattr(gallery, name)))
gallery.draw_all = timing("final figures", gallery.draw_all)
checkpoint.take_checkpoint = timing("checkpoints", checkpoint.take_checkpoint)
WriteBehind.finish = timing("waiting for the files' writes", WriteBehind.finish)
code = main(sys.argv[1:])
spent["torch import"] = imported - began
spent["in process"] = time.perf_counter() - began
print(json.dumps(spent))
"""


def breakdown(data: str, data_dir: str, epochs: int, tmp: Path, rounds: int) -> None:
    """Where a whole ``vaekit train`` run's wall time goes, part by part (medians of
    ``rounds``), with each computing part's share of the GEMM roofline (its matrix products'
    FLOPs at the best rate measured at the model's shapes)."""
    argv = vaekit_train(data, data_dir, epochs, tmp / "parts")
    argv = [sys.executable, "-c", PARTS, *argv[argv.index("train") :]]
    runs: dict[str, list[float]] = {}
    for _ in range(rounds):
        started = time.perf_counter()
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        wall = time.perf_counter() - started
        parts = json.loads(out.splitlines()[-1])
        parts["interpreter start"] = wall - parts.pop("in process")
        parts["whole command"] = wall
        for part, seconds in parts.items():
            runs.setdefault(part, []).append(seconds)
    median = {part: statistics.median(values) for part, values in runs.items()}
    median["the rest"] = 2 * median["whole command"] - sum(median.values())
    gemm = run_worker("gemm")["rates"]
    rate = max(r["model"] for r in gemm.values()) * 1e9
    data_sizes = run_worker("sizes", **{"data": data, "data_dir": data_dir})
    flops = flops_per_example()
    work = {
        "training steps": epochs * data_sizes["train"] * flops["train"],
        "test ELBO each epoch": epochs * data_sizes["test"] * flops["test"],
    }
    print(
        f"where `vaekit train --data {data} --epochs {epochs}` spends its "
        f"{median['whole command']:.1f} s (medians of {rounds}; roofline: the parts' matrix "
        f"products at {rate / 1e9:.0f} GFLOP/s, the best rate at the model's shapes):\n"
    )
    rows = []
    for part, seconds in sorted(median.items(), key=lambda item: -item[1]):
        share = f"{100 * work[part] / rate / seconds:.0f}%" if part in work else ""
        rows.append(
            [part, f"{seconds:.2f}", f"{100 * seconds / median['whole command']:.0f}%", share]
        )
    table(["part", "seconds", "of the command", "share of roofline"], rows)


def iwae_table(
    images: int, common: dict, rate_seconds: float, rounds: int, part_repeats: int
) -> None:
    """The importance-weighted evaluation (k = 5000) as a share of the GEMM roofline, as the
    command line runs it (waiting threads asleep) and with them spinning, the two taking turns
    ``rounds`` times; and where its workers' time went. Each evaluation runs in a fresh process
    between two of the GEMM rate at the decoder's shapes, and its share is of the better of
    those two: the machine's speed drifts with what else runs on its host. Then the same for
    the parts of a chunk alone (:func:`worker_iwae_parts`, each part ``part_repeats`` times a
    worker), ``rounds`` times, beside the evaluation's own rate."""
    settings = dict(common, k=5000, images=images)
    policies = ["PASSIVE", "ACTIVE"]
    runs: dict[str, list[dict]] = {policy: [] for policy in policies}
    rates = [run_worker("decoder_rate", rate_seconds=rate_seconds)["rate"]]

    def between_rates(kind: str, env: dict | None = None, **args) -> dict:
        """The measurement, with ``rate``: the better of the decoder's rate just before it and
        just after it."""
        run = run_worker(kind, env, **args)
        rates.append(run_worker("decoder_rate", rate_seconds=rate_seconds)["rate"])
        return dict(run, rate=max(rates[-2:]))

    for turn in range(rounds):
        for policy in policies[:: 1 if turn % 2 == 0 else -1]:
            env = dict(os.environ, OMP_WAIT_POLICY=policy)
            runs[policy].append(between_rates("iwae", env, **settings))
    rows = []
    for policy, results in runs.items():
        shares = sorted(run["flops"] / (run["rate"] * 1e9) / run["seconds"] for run in results)
        decoder = statistics.median(run["spent"]["decoder"] for run in results)
        rows.append(
            [
                f"{results[0]['threads']} workers of 1 thread, OMP_WAIT_POLICY={policy}",
                f"{statistics.median(run['seconds'] for run in results):.1f} s for "
                f"{results[0]['n']:,}",
                f"{results[0]['flops'] / 1e12:.2f}",
                f"{statistics.median(run['rate'] for run in results):.0f}",
                f"{at_least(statistics.median(shares), 80)}; "
                f"{percent_down(shares[0])}–{percent_down(shares[-1])}%",
                f"{100 * decoder:.0f}% / {100 * (1 - decoder):.0f}%",
                f"{results[0]['nll']:.2f}",
                f"{max(run['peak_rss_gb'] for run in results):.2f}",
            ]
        )
    print(
        f"importance-weighted evaluation, k = 5000, the reference model, torch engine; medians "
        f"of {rounds} runs, the two settings taking turns:\n"
    )
    table(
        ["threads", "time", "TFLOP",
         "GEMM GFLOP/s at the decoder's shapes (the faster of MKL and oneDNN), around each run",
         "share of roofline (target ≥ 80%); lowest–highest",
         "workers' time: decoder with its likelihood / the rest", "NLL (nats)",
         "peak RSS (GB)"],
        rows,
    )  # fmt: skip
    parts = []
    for turn in range(rounds):
        order = list(IWAE_PARTS)[:: 1 if turn % 2 == 0 else -1]
        run = between_rates("iwae_parts", k=5000, repeats=part_repeats, order=order, **common)
        parts.append(run)
    asleep = runs["PASSIVE"]
    measured = {
        name: [(run["rates"][name], run["rate"]) for run in parts] for name in IWAE_PARTS
    } | {"evaluation": [(run["flops"] / run["seconds"] / 1e9, run["rate"]) for run in asleep]}
    labels = IWAE_PARTS | {"evaluation": "the evaluation itself, as above (waiting threads asleep)"}
    samples, images = parts[0]["chunk"]
    print(
        f"\nthe evaluation's parts: {parts[0]['threads']} workers of 1 thread each repeat one "
        f"part of a chunk ({samples} samples of {images} images), the decoder's products "
        f"counted; medians of {rounds} rounds, the parts taking turns:\n"
    )
    table(
        ["what each worker repeats", "GFLOP/s; lowest–highest", "share of roofline"],
        [
            [
                labels[name],
                f"{statistics.median(r for r, _ in pairs):.0f}; "
                f"{min(r for r, _ in pairs):.0f}–{max(r for r, _ in pairs):.0f}",
                f"{100 * statistics.median(r / roof for r, roof in pairs):.0f}%",
            ]
            for name, pairs in measured.items()
        ],
    )


# --- the report ------------------------------------------------------------------------------


def table(header: list[str], rows: list[list[str]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("| " + " | ".join(["---"] + ["---:"] * (len(header) - 1)) + " |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=SHARED_DATA)
    parser.add_argument("--quick", action="store_true", help="mnist-small, small sizes: < 1 min")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per training measurement")
    parser.add_argument("--rounds", type=int, default=4, help="turns of the training loops")
    parser.add_argument(
        "--only",
        choices=["whole-command", "per-epoch", "side-by-side", "evaluation", "busy"],
        help="run one section alone (whole-command: the vaekit train command against the "
        "example program; per-epoch: the GEMM rates and the per-epoch table; side-by-side: "
        "several trainings at once, default threads against one each; evaluation: k = 5000 as "
        "a share of the GEMM roofline; busy: benchmarks/busy.py's tables)",
    )
    parser.add_argument(
        "--eval-images", type=int, default=1000, help="test images of each k = 5000 evaluation"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("worker_args", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = WORKERS[args.worker](json.loads(args.worker_args))
        print(json.dumps(dict(result, peak_rss_gb=peak_rss_gb())))
        return

    from vaekit.data import dataset_status

    present = {d["name"]: d["present"] for d in dataset_status(args.data_dir)}
    full = not args.quick and present["mnist"]
    if not args.quick and not full:
        print(f"MNIST is not in {args.data_dir}; measuring on mnist-small instead (--data-dir)")
    data = "mnist" if full else "mnist-small"
    epochs, rounds = (args.epochs, args.rounds) if full else (1, 1)
    common = {"data": data, "data_dir": str(args.data_dir)}
    started = time.perf_counter()
    whole_epochs, whole_rounds = ([3, 10], 3) if full else ([1], 1)
    eval_images, rate_seconds, eval_rounds, part_repeats = (
        (args.eval_images, 3.0, 3, 100) if full else (50, 0.3, 1, 2)
    )
    if args.only == "whole-command":
        whole_command(data, str(args.data_dir), whole_epochs, whole_rounds)
        print(f"(this benchmark took {time.perf_counter() - started:.0f} s)")
        return

    if args.only == "side-by-side":
        side_by_side(common, epochs)
        print(f"(this benchmark took {time.perf_counter() - started:.0f} s)")
        return
    import busy  # benchmarks/busy.py, beside this script

    if args.only == "evaluation":
        print(busy.machine_line() + "\n")
        iwae_table(eval_images, common, rate_seconds, eval_rounds, part_repeats)
        print(f"(this benchmark took {time.perf_counter() - started:.0f} s)")
        return
    if args.only == "busy":
        busy_tables(data, args, rounds)
        print(f"(this benchmark took {time.perf_counter() - started:.0f} s)")
        return

    import numpy as np
    import torch

    print(
        f"machine: {os.cpu_count()} CPU cores, {platform.machine()}, python "
        f"{platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}; "
        f"data {data}; {'full' if full else 'quick'} mode"
    )
    gemm = run_worker("gemm")
    rates = gemm["rates"]
    roofline_name = max(rates, key=lambda name: rates[name]["model"])
    roofline = rates[roofline_name]["model"]
    mkl_rate = rates["torch.mm (MKL)"]["model"]
    print(f"\nfloat32 GEMM rate, GFLOP/s ({gemm['threads']} threads):\n")
    table(
        ["library", "2048×2048×2048", "the model's step products, batch 128"],
        [[name, f"{r['square']:.0f}", f"{r['model']:.0f}"] for name, r in rates.items()],
    )
    flops = flops_per_example()

    # training: the loops take turns, each in a fresh process
    loops = {"conventional": None, "torch": None, "numpy": None}
    labels = {
        "conventional": "conventional PyTorch loop",
        "torch": "vaekit, torch engine",
        "numpy": "vaekit, numpy engine",
    }
    if "OPENBLAS_CORETYPE" in os.environ:  # a pinned OpenBLAS kernel; also measure its own pick
        loops["numpy-openblas-auto"] = {
            k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"
        }
        labels["numpy-openblas-auto"] = (
            f"vaekit, numpy engine, OpenBLAS's own kernels (without this machine's "
            f"OPENBLAS_CORETYPE={os.environ['OPENBLAS_CORETYPE']})"
        )
    runs: dict[str, list[dict]] = {name: [] for name in loops}
    for _ in range(rounds):
        for name, env in loops.items():
            engine = name.split("-")[0]
            runs[name].append(run_worker("train", env, engine=engine, epochs=epochs, **common))
    first = runs["torch"][0]
    epoch_flops = first["train"] * flops["train"] + first["test"] * flops["test"]
    roofline_seconds = epoch_flops / (roofline * 1e9)
    print(
        f"model 784-400-20: {flops['train'] / 1e6:.3f} MFLOP per training example, "
        f"{flops['test'] / 1e6:.3f} per test example; one epoch ({first['train']:,} training + "
        f"{first['test']:,} test examples) = {epoch_flops / 1e9:.1f} GFLOP; roofline "
        f"{roofline:.0f} GFLOP/s ({roofline_name}) → {roofline_seconds:.3f} s per epoch\n"
    )
    per_epoch = {
        name: statistics.median(s for run in runs[name] for s in run["seconds"]) for name in loops
    }
    rows = []
    for name in loops:
        seconds = per_epoch[name]
        rows.append(
            [
                labels[name],
                "784-400-20",
                f"{first['train'] / seconds:,.0f}",
                f"{seconds:.3f}",
                f"{per_epoch['conventional'] / seconds:.2f}×",
                f"{100 * roofline_seconds / seconds:.0f}%",
                f"{100 * epoch_flops / (mkl_rate * 1e9) / seconds:.0f}%",
                f"{max(run['peak_rss_gb'] for run in runs[name]):.2f}",
                f"{runs[name][-1]['test_loss']:.2f}",
            ]
        )
    print(
        f"one epoch of training + the test ELBO (median of {rounds} × {epochs} epochs, "
        "loops taking turns):\n"
    )
    table(
        [
            "loop",
            "model",
            "samples/s",
            "s/epoch",
            "vs conventional",
            f"% of GEMM roofline ({roofline_name})",
            "% at torch.mm's rate",
            "peak RSS (GB)",
            f"test −ELBO after {epochs} (nats)",
        ],
        rows,
    )
    if args.only == "per-epoch":
        print(f"(this benchmark took {time.perf_counter() - started:.0f} s)")
        return

    # scaling
    samples = 20_000 if full else 2_560
    batches = [32, 64, 128, 256, 512, 1024]
    widths = [200, 400, 600, 800, 1000]
    for title, grid, key in (
        ("batch size (hidden 400)", [(b, 400) for b in batches], 0),
        ("hidden width (batch 128)", [(128, w) for w in widths], 1),
    ):
        result = {
            engine: run_worker("scaling", engine=engine, grid=grid, samples=samples, **common)
            for engine in ("torch", "numpy")
        }
        print(f"training samples/s against {title}, {samples:,} samples each:\n")
        table(
            [title.split(" (")[0], "torch", "numpy"],
            [
                [str(point[key]), f"{result['torch']['rates'][i]:,.0f}"]
                + [f"{result['numpy']['rates'][i]:,.0f}"]
                for i, point in enumerate(grid)
            ],
        )

    # evaluation and a whole run
    iwae_table(eval_images, common, rate_seconds, eval_rounds, part_repeats)
    cli_epochs = 10 if full else 2
    whole_run = run_worker("cli", epochs=cli_epochs, **common)
    print(
        f"whole run, `vaekit train --data {data} --epochs {cli_epochs}` (checkpoints and figures "
        f"every epoch): {whole_run['seconds']:.1f} s, peak RSS {whole_run['peak_rss_gb']:.2f} GB"
    )
    print()
    from startup import startup_table  # benchmarks/startup.py, beside this script

    startup_table(1 if args.quick else 5)
    whole_command(data, str(args.data_dir), whole_epochs, whole_rounds)
    side_by_side(common, epochs)
    busy_tables(data, args, rounds)
    print(f"(this benchmark took {time.perf_counter() - started:.0f} s)")


def busy_tables(data: str, args: argparse.Namespace, rounds: int) -> None:
    """benchmarks/busy.py's three sections: where two threads pay, the busy-machine table and
    the demo against its steps (``--quick``: their small sizes)."""
    import busy  # benchmarks/busy.py, beside this script

    print(busy.machine_line() + "\n")
    grid = [(200, 32), (400, 128)] if args.quick else busy.FULL_GRID
    busy.threads_table(grid, min(rounds, 3), seconds=0.2 if args.quick else 1.0)
    busy.busy_table(data, str(args.data_dir), min(rounds, 3), args.quick)
    busy.demo_table(min(rounds, 3), args.quick)


if __name__ == "__main__":
    main()
