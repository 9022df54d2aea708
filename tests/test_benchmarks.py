"""The benchmark scripts still run against the current API (their quick modes, on mnist-small)."""

import contextlib
import importlib.util
import itertools
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def torch_sees_a_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.parametrize(
    "script, expected",
    [
        ("plain_python.py", "speed-up"),
        ("run.py", "| default (1 thread) | "),  # its busy-machine table, near its end
        ("distributed.py", "| 2 | 1 |"),
        ("anomaly.py", "| breast cancer (benign), 1 split |"),
        ("quality.py", "| 2 | "),
        ("disentanglement.py", "| β-TCVAE (β = 6) | 1 | "),
    ],
)
def test_benchmark_quick_mode_runs(script, expected, tmp_path):
    """Each prints its table's row; generated data sets (shapes) go to a temporary cache."""
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick"],
        capture_output=True,
        text=True,
        env={**os.environ, "XDG_CACHE_HOME": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert expected in proc.stdout


def test_speed_suite_per_epoch_section_alone(tmp_path):
    """``run.py --only per-epoch`` prints the GEMM rates and the per-epoch table, then stops
    before the scaling section."""
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / "run.py"), "--quick", "--only", "per-epoch"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| torch.mm (MKL) |" in proc.stdout
    assert "| vaekit, torch engine |" in proc.stdout
    assert "| vaekit, numpy engine |" in proc.stdout
    assert "training samples/s against" not in proc.stdout


def test_speed_suite_evaluation_section_reports_its_share_of_the_roofline():
    """``run.py --only evaluation`` measures k = 5000 with waiting threads asleep and spinning,
    each as a share of the GEMM rate at the decoder's shapes, beside the machine's GEMM rate;
    then the rate of each part of a chunk alone, beside the evaluation's."""
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / "run.py"), "--quick", "--only", "evaluation"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "float32 GEMM 2048³:" in proc.stdout
    rows = [line for line in proc.stdout.splitlines() if "OMP_WAIT_POLICY=" in line]
    assert len(rows) == 2 and all("% (" in row and "s for 50 |" in row for row in rows), rows
    for row in rows:  # the verdict agrees with the share as printed: no "80% (missed)"
        share, verdict = re.search(r"\| (\d+\.\d)% \((met|missed)\); ", row).groups()
        assert (float(share) >= 80) == (verdict == "met"), row
    parts = proc.stdout.split("the evaluation's parts: ")[1].splitlines()
    rows = [line for line in parts if line.startswith("| the ")]
    assert [row.split(" | ")[0] for row in rows] == [
        "| the decoder (its two layers)",
        "| the decoder with its likelihood (one product by input, then a pass)",
        "| the engine's whole chunk (log_weights: latents, decoder, likelihood, densities)",
        "| the evaluation itself, as above (waiting threads asleep)",
    ]
    assert all(re.fullmatch(r"\| .+ \| \d+; \d+–\d+ \| \d+% \|", row) for row in rows), rows


@pytest.mark.parametrize(
    ("rounding", "value", "printed"),
    [
        ("percent_down", 0.7996, "79.9"),
        ("percent_down", 0.79999, "79.9"),
        ("percent_down", 0.8, "80.0"),
        ("percent_down", 0.8004, "80.0"),
        ("percent_down", 0.8391, "83.9"),
        ("percent_down", 1.0, "100.0"),
        ("ratio_up", 0.5, "0.50"),
        ("ratio_up", 0.5004, "0.51"),
        ("ratio_up", 1.299, "1.30"),
        ("ratio_up", 1.3, "1.30"),
        ("ratio_up", 1.3001, "1.31"),
        ("ratio_up", 2.6, "2.60"),
    ],
)
def test_a_number_is_printed_rounded_away_from_its_target(rounding, value, printed, monkeypatch):
    """A share just under a target (at least) never prints as the target, rounded down to a
    tenth of a point: 0.7996 is 79.9%, not 80.0%. A ratio just over one (at most) never does
    either, rounded up to a hundredth: 1.3001 is 1.31, not 1.30."""
    run = _benchmark_module(monkeypatch, "run")
    assert getattr(run, rounding)(value) == printed


@pytest.mark.parametrize(
    ("verdict", "value", "target", "printed"),
    [
        ("at_least", 0.7996, 80, "79.9% (missed)"),
        ("at_least", 0.8, 80, "80.0% (met)"),
        ("at_least", 0.8391, 80, "83.9% (met)"),
        ("at_most", 1.3001, 1.3, "1.31 (missed)"),
        ("at_most", 1.3, 1.3, "1.30 (met)"),
        ("at_most", 0.5004, 0.5, "0.51 (missed)"),
        ("at_most", 2.5, 3, "2.50 (met)"),
    ],
)
def test_a_verdict_is_of_the_number_printed_beside_it(verdict, value, target, printed, monkeypatch):
    """Each benchmark's "met" or "missed" judges the number it prints, never the unrounded one."""
    run = _benchmark_module(monkeypatch, "run")
    assert getattr(run, verdict)(value, target) == printed


def test_the_decoders_roofline_is_the_faster_library_at_each_shape(monkeypatch):
    """The evaluation's share is of the best rate either of torch's libraries reaches at the
    decoder's shapes: a library that is slower at every shape does not set it."""
    run = _benchmark_module(monkeypatch, "run")
    last = []
    products = {name: lambda a, b, name=name: last.append(name) for name in ("slow", "fast")}
    monkeypatch.setattr(run, "torch_products", lambda: products)

    def best_seconds(fn, min_time):
        fn()
        return {"slow": 2.0, "fast": 1.0}[last[-1]]

    monkeypatch.setattr(run, "best_seconds", best_seconds)
    assert run.worker_decoder_rate({"rate_seconds": 0.1})["rate"] == 2 * 5344 * 400 * 784 / 1e9
    assert last == ["slow", "fast"] * 4  # both libraries at each of the four shapes


def _gpu_check(*flags: str) -> subprocess.CompletedProcess:
    """``benchmarks/gpu.py`` with ``flags``, one thread (quick on a busy machine)."""
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / "gpu.py"), *flags],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def test_gpu_check_runs_its_code_on_the_cpu(tmp_path):
    """``gpu.py --device cpu --quick`` runs every part of the GPU check on the CPU: the CUDA-only
    tests (skipped here), the reference model against the example program, the conv model in
    fp32 and bf16, the importance-weighted bound; it prints the device, torch's version and the
    GEMM rate above the table and writes the JSON, nothing failed."""
    import torch

    out = tmp_path / "check.json"
    proc = _gpu_check("--device", "cpu", "--quick", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    caption, blank, header = proc.stdout.splitlines()[:3]
    assert caption.startswith("GPU check on CPU (") and f"torch {torch.__version__};" in caption
    assert "float32 GEMM rate " in caption and "TFLOP/s" in caption
    assert header == "| part | result | time | speed | host syncs | peak GPU memory (GB) |"
    assert "failed:" not in proc.stdout
    report = json.loads(out.read_text())
    assert set(report) == {
        "machine", "data", "train_examples", "test_examples", "sizes", "seconds",
        "tests", "reference_model", "conv", "evaluation",
    }  # fmt: skip
    assert {"device", "torch", "gemm_tflops"} <= set(report["machine"])
    tests = report["tests"]
    assert (tests["passed"], tests["failed"], tests["errors"]) == (0, 0, 0)
    assert tests["skipped"] >= 1 and "test_devices.py" in tests["files"]
    assert set(report["reference_model"]) == {"vaekit", "example", "speedup"}
    assert set(report["conv"]) == {"fp32", "bf16"}
    for result in (*report["reference_model"].values(), *report["conv"].values()):
        if isinstance(result, dict):
            assert result["epochs_per_second"] > 0 and "peak_gpu_gb" in result
    for program in ("vaekit", "example"):
        assert report["reference_model"][program]["steps_per_epoch"] == 4  # 512 / 128
    evaluation = report["evaluation"]
    assert evaluation["k"] == 50 and evaluation["images"] == evaluation["all_images"] == 16
    assert evaluation["share_of_decoder_gemm_rate"] > 0 and evaluation["nll"] > 0


@pytest.mark.skipif(torch_sees_a_gpu(), reason="PyTorch sees a GPU here")
def test_gpu_check_refuses_in_one_line_without_a_gpu(tmp_path):
    proc = _gpu_check("--quick", "--out", str(tmp_path / "check.json"))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "no CUDA GPU" in proc.stderr
    assert "--device cpu" in proc.stderr and not (tmp_path / "check.json").exists()


def test_gpu_check_counts_every_synchronisation(monkeypatch):
    """On a GPU the check counts each of torch's sync warnings (all from one line) and each
    torch.cuda.synchronize call, lets other warnings through, and restores the debug mode and
    synchronize; faked here, as torch has no CUDA build on CI."""
    import warnings

    import torch

    gpu = _benchmark_module(monkeypatch, "gpu")
    modes = ["default"]
    monkeypatch.setattr(torch.cuda, "get_sync_debug_mode", lambda: modes[-1])
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", modes.append)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    synchronize = torch.cuda.synchronize
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        with gpu.counting_syncs(torch.device("cuda")) as count:
            for _ in range(3):
                warnings.warn(gpu.SYNC_WARNING, stacklevel=1)
            torch.cuda.synchronize()
            warnings.warn("something else", stacklevel=1)
    assert count == [4]
    assert modes == ["default", "warn", "default"] and torch.cuda.synchronize is synchronize
    assert [str(w.message) for w in shown] == ["something else"]
    with gpu.counting_syncs(torch.device("cpu")) as count:
        pass
    assert count == [None]  # no device to wait for


def test_gpu_check_counts_the_bounds_products_as_the_speed_suite(monkeypatch):
    """k = 5000 on MNIST's 10,000 test images: the encoder once per image and the decoder once
    per sample, 2 FLOPs per multiply-add, 32.17 TFLOP (the decoder's 32.16 of them)."""
    gpu = _benchmark_module(monkeypatch, "gpu")
    encoder, decoder = 2 * (784 * 400 + 2 * 400 * 20), 2 * (20 * 400 + 400 * 784)
    assert gpu.iwae_flops_per_image(5000) == encoder + 5000 * decoder
    assert round(10_000 * 5000 * decoder / 1e12, 2) == 32.16
    assert gpu.decoder_products(80) == [(80, 20, 400), (80, 400, 784)]


@pytest.mark.parametrize(("device", "expected"), [("cpu", ["slow", "fast"]), ("cuda", ["@"])])
def test_gpu_checks_decoder_rate_is_the_faster_library_on_the_cpu(monkeypatch, device, expected):
    """On the CPU the evaluation's share is of the faster of torch's libraries at the decoder's
    shapes, as in the speed suite; on a GPU, of ``@``."""
    import torch

    gpu = _benchmark_module(monkeypatch, "gpu")
    products = {"slow": "slow", "fast": "fast"}
    monkeypatch.setattr(gpu, "torch_products", lambda: products)
    asked = []

    def gemm_tflops(shapes, device, product="@"):
        asked.append(product)
        assert shapes == gpu.decoder_products(5000)
        return {"slow": 1.0, "fast": 3.0, "@": 2.0}[product]

    monkeypatch.setattr(gpu, "gemm_tflops", gemm_tflops)
    rate = gpu.decoder_gemm_tflops(5000, torch.device(device))
    assert asked == expected and rate == {"cpu": 3.0, "cuda": 2.0}[device]


def _benchmark_module(monkeypatch, name: str):
    """benchmarks/NAME.py as a module, with benchmarks/ on the path for the helpers it imports
    from run.py beside it, and in ``sys.modules`` for its dataclasses (both undone after)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


def test_example_program_trains_and_saves_its_images(tmp_path):
    """The offline stand-in for PyTorch's VAE example: one epoch on mnist-small prints the
    example's two loss lines and saves the reconstruction and sample PNGs."""
    import vaekit.data

    images = Path(vaekit.data.__file__).parent / "mnist_small"
    argv = [sys.executable, str(BENCHMARKS / "example_program.py"), "--epochs", "1"]
    argv += ["--data-dir", str(images), "--out", str(tmp_path)]
    proc = subprocess.run(argv, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "====> Epoch: 1 Average loss:" in proc.stdout
    assert "====> Test set loss:" in proc.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reconstruction_1.png", "sample_1.png"]


def test_leaderboard_row_trains_to_its_budget_evaluates_and_tabulates(monkeypatch, tmp_path):
    """One quick row: the run is saved at the budget, evaluated with the processor it trained
    on, and --table reads it back."""
    script = [sys.executable, str(BENCHMARKS / "leaderboard.py")]
    out = ["--out", str(tmp_path)]
    proc = subprocess.run(
        [*script, "vae", "--quick", "--budgets", "0.02", *out],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| mnist-small | vae |" in proc.stdout
    assert "command: python" in proc.stdout and "(seed 0)" in proc.stdout
    table = subprocess.run([*script, "--table", *out], capture_output=True, text=True)
    assert table.returncode == 0 and "| mnist-small | vae |" in table.stdout
    row = tmp_path / "mnist-small-vae-0.02tflop" / "leaderboard.json"
    processor = _leaderboard_module(monkeypatch).processor_name()
    assert processor and json.loads(row.read_text())["processors"] == [processor]
    assert f"| {processor} |" in table.stdout
    before = row.read_bytes()
    for extra, error in (
        ([], None),  # the same command again: the row is read back, nothing trains
        (["--seed", "1"], "was trained with other settings; remove it to start"),
        (["--evaluate-only", "--budgets", "9"], "mnist-small-vae-9tflop does not exist"),
    ):
        again = subprocess.run(
            [*script, "vae", "--quick", "--budgets", "0.02", *out, *extra],
            capture_output=True,
            text=True,
        )
        if error is None:
            assert again.returncode == 0, again.stderr[-2000:]
            assert "| mnist-small | vae |" in again.stdout
            assert "MFLOP per training example" in again.stdout
        else:
            assert again.returncode == 2 and again.stderr.count("\n") == 1, again.stderr
            assert error in again.stderr
        assert row.read_bytes() == before


def _leaderboard_module(monkeypatch):
    """benchmarks/leaderboard.py as a module; the OMP_WAIT_POLICY it sets is restored after."""
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    return _benchmark_module(monkeypatch, "leaderboard")


def test_every_leaderboard_command_the_docs_quote_parses(monkeypatch):
    """The leaderboard commands quoted in README.md and docs/ train for hours, so no test runs
    them; each must still name a model and flags that the script's own parser accepts (MODEL, in
    the command for every model, stands for each of them)."""
    leaderboard = _leaderboard_module(monkeypatch)
    parser = leaderboard.argument_parser()
    root = BENCHMARKS.parent
    quoted = [
        command.split()
        for path in [root / "README.md", *sorted((root / "docs").glob("*.md"))]
        for command in re.findall(r"`python benchmarks/leaderboard\.py([^`]*)`", path.read_text())
    ]
    commands = [argv for argv in quoted if argv]  # a section's title names the script alone
    assert len(commands) >= 15, commands
    for argv in commands:
        for model in leaderboard.MODELS if "MODEL" in argv else [None]:
            args = parser.parse_args([model if word == "MODEL" else word for word in argv])
            assert args.model in leaderboard.MODELS and args.budgets, argv


def _epoch_clock():
    """A stand-in for the CPU clock that reads one minute more at each call: train() reads it
    once at its start and once per epoch, so each record's CPU minutes count its epochs."""
    ticks = itertools.count()
    return lambda: float(next(ticks))


def test_a_stopped_leaderboard_run_resumes_to_the_same_weights(monkeypatch, tmp_path):
    """Training to a budget of 1.5 epochs' work (a row at epoch 2), then again with budgets of
    1.5 and 3.5 (a second process, as after a stop, here on another processor, and with
    records from before they kept their work), saves the same 4-epoch row, bit for bit, as one
    run to 3.5, and names both processors; a budget passed without its row, or other settings,
    is refused."""
    import argparse

    from vaekit.config.settings import ModelConfig
    from vaekit.data.pipeline import TrainingData
    from vaekit.errors import ConfigError
    from vaekit.model import flops
    from vaekit.runs import checkpoint, config_file
    from vaekit.runs.metrics import read_metrics, write_metrics

    leaderboard = _leaderboard_module(monkeypatch)
    entry = leaderboard.MODELS["vae"]

    def arguments(out, budgets, seed=0):
        return argparse.Namespace(
            data="mnist-small",
            data_dir=None,
            engine="torch",
            seed=seed,
            model="vae",
            out=out,
            budgets=budgets,
            threads=1,
        )

    def run(*how, **seed):
        args = arguments(*how, **seed)
        config = leaderboard.train_config(args, entry)
        return leaderboard.train(args, entry, config, clock=_epoch_clock())

    data = TrainingData.load(leaderboard.train_config(arguments(None, []), entry))
    model = ModelConfig(input_shape=data.train.shape[1:], **entry.model)
    epoch = flops.tflop(flops.epoch_flops(model, len(data.train), 100))  # TFLOP
    rows = {
        b: leaderboard.row_dir(arguments(tmp_path / "stopped", []), b * epoch) for b in (1.5, 3.5)
    }
    stale = tmp_path / "straight" / rows[3.5].name / leaderboard.ROW_FILE
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")  # an earlier run's evaluation of this row
    straight = run(tmp_path / "straight", [3.5 * epoch])
    assert not stale.exists()
    assert run(tmp_path / "stopped", [1.5 * epoch]) == [rows[1.5]]
    progress = tmp_path / "stopped" / "mnist-small-vae-training"
    write_metrics(
        progress, [{k: v for k, v in r.items() if k != "tflop"} for r in read_metrics(progress)]
    )
    monkeypatch.setattr(leaderboard, "processor_name", lambda: "another CPU")
    resumed = run(tmp_path / "stopped", [1.5 * epoch, 3.5 * epoch])
    assert resumed == [rows[1.5], rows[3.5]]
    expected, got = (
        checkpoint.load_weights(p, config_file.read_config(p)[0])
        for p in (straight[-1], resumed[-1])
    )
    assert expected.keys() == got.keys()
    for name in expected:
        assert np.array_equal(expected[name], got[name]), name
    records = read_metrics(resumed[-1])
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    assert [r["loss"] for r in records] == [r["loss"] for r in read_metrics(straight[-1])]
    assert [r["tflop"] for r in records] == pytest.approx([epoch, 2 * epoch, 3 * epoch, 4 * epoch])
    assert [r["cpu_minutes"] for r in records] == [1.0, 2.0, 3.0, 4.0]
    this_cpu = leaderboard.read_processors(straight[-1])
    assert len(this_cpu) == 1 and leaderboard.read_processors(resumed[0]) == this_cpu
    assert leaderboard.read_processors(resumed[-1]) == [*this_cpu, "another CPU"]
    with pytest.raises(ConfigError, match=f"trained past {2.5 * epoch:g} TFLOP"):
        run(tmp_path / "stopped", [2.5 * epoch, 6 * epoch])
    with pytest.raises(ConfigError, match="other settings; remove it"):
        run(tmp_path / "stopped", [6 * epoch], seed=1)


def test_the_default_budgets_are_the_work_of_the_hvae_vamp_rows_they_replace(monkeypatch):
    """hvae-vamp's MNIST rows at 30 and 120 CPU-minutes trained 193 and 688 epochs of MNIST's
    60,000 images: the default budgets in TFLOP are reached at those same epoch ends."""
    from vaekit.config.settings import ModelConfig
    from vaekit.model import flops

    leaderboard = _leaderboard_module(monkeypatch)
    model = ModelConfig(**leaderboard.MODELS["hvae-vamp"].model)
    epoch = flops.tflop(flops.epoch_flops(model, 60_000, 100))
    first_past = [math.ceil(budget / epoch) for budget in leaderboard.DEFAULT_BUDGETS]
    assert first_past == [193, 688]


def test_leaderboard_table_reads_rows_saved_before_they_recorded_work_or_processors(monkeypatch):
    """A row written before rows recorded their work (budgets were CPU minutes) or named their
    processors still tabulates, its columns saying so instead of raising KeyError."""
    leaderboard = _leaderboard_module(monkeypatch)
    row = {
        "data": "mnist", "model": "vae", "parameters": 1000, "budget_cpu_minutes": 30.0,
        "cpu_minutes": 30.1, "wall_minutes": 30.2, "epochs": 7, "test_elbo_loss": 100.0,
        "test_nll": 95.0, "iw_samples": 5000, "evaluation_minutes": 4.0, "published": "",
    }  # fmt: skip
    now = {**row, "processors": ["AMD EPYC"], "tflop": 12.345, "budget_tflop": 12.3}
    assert (
        leaderboard.table([now])
        .splitlines()[-1]
        .startswith("| mnist | vae | 1,000 | 12.35 | 7 | 30 | 30 | AMD EPYC | 100.00 |")
    )
    assert (
        leaderboard.table([row])
        .splitlines()[-1]
        .startswith("| mnist | vae | 1,000 | not recorded | 7 | 30 | 30 | not recorded |")
    )


def test_leaderboard_entries_train_with_their_own_settings_on_the_protocol(monkeypatch):
    """The KL warm-up of hvae-vamp and of its variants reaches the config their runs train with
    (and is checked on resume, which compares whole configs); the other entries train by the
    protocol alone."""
    import argparse

    leaderboard = _leaderboard_module(monkeypatch)
    args = argparse.Namespace(data="mnist", data_dir=None, engine="torch", seed=0, threads=1)
    configs = {name: leaderboard.train_config(args, e) for name, e in leaderboard.MODELS.items()}
    warmed = {"hvae-vamp", "hvae-vamp-conv", "hvae-vamp-gated", "hvae-vamp-iwae"}
    assert all(configs[name].kl_warmup == 50 for name in warmed)
    assert all(c.kl_warmup == 0 for name, c in configs.items() if name not in warmed)
    assert {c.lr for c in configs.values()} == {1e-3}


def test_conditional_benchmark_judges_each_latent_size_and_prior():
    argv = [sys.executable, str(BENCHMARKS / "conditional.py"), "--quick", "--epochs", "1"]
    argv += ["--latent-dims", "2", "--priors", "vamp", "class", "--per-class", "20"]
    argv += ["--classifier-epochs", "1"]
    proc = subprocess.run(argv, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| 2 | vamp |" in proc.stdout and "| 2 | class |" in proc.stdout


@pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist").is_dir(),
    reason="needs Fashion-MNIST (apt-get install dataset-fashion-mnist; CI installs it)",
)
def test_own_images_benchmark_judges_the_default_command(tmp_path):
    argv = [sys.executable, str(BENCHMARKS / "own_images.py"), "--quick", "--out", str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (
        "| default | `(none)` |" in proc.stdout
        and "| conditional | `--conditional` |" in proc.stdout
    )
    assert "right on" in proc.stdout and "float32 GEMM" in proc.stdout


@pytest.mark.parametrize("name", ["vamp", "hvae-vamp"])
def test_the_leaderboards_vamp_models_use_their_latents(monkeypatch, name):
    """The VampPrior entries train out of posterior collapse: after 5 epochs of mnist-small
    under the leaderboard's protocol their KL is well above 0 (with tanh it was 0.0 from the
    fifth epoch on for one layer, 0.6 nats for two)."""
    import argparse
    import dataclasses

    from vaekit.config.settings import ModelConfig
    from vaekit.data.pipeline import TrainingData
    from vaekit.train.loop import fit
    from vaekit.train.start import engine_for

    leaderboard = _leaderboard_module(monkeypatch)
    args = argparse.Namespace(data="mnist-small", data_dir=None, engine="torch", seed=0, threads=1)
    entry = leaderboard.MODELS[name]
    # without hvae-vamp's KL warm-up, whose small early KL weight would pass this by itself
    config = dataclasses.replace(leaderboard.train_config(args, entry), epochs=5, kl_warmup=0)
    data = TrainingData.load(config)
    model = ModelConfig(input_shape=tuple(data.train.shape[1:]), **entry.model)
    history = fit(engine_for(model, config), config, data)
    assert history[-1]["kl"] > 1.0


def _hogs_running() -> dict[int, int]:
    """{pid: session id} of every ``yes`` process running now (zombies left out)."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid, rest = stat.read_text().split(" (", 1)
        except OSError:  # gone since the listing
            continue
        name, fields = rest.rsplit(") ", 1)
        state, _, _, session = fields.split()[:4]
        if name == "yes" and state != "Z":
            found[int(pid)] = int(session)
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
@pytest.mark.parametrize("own_session", [False, True])
def test_busy_hogs_share_one_session_of_their_own_or_ours(monkeypatch, own_session):
    """The busy table's hogs: two ``yes`` processes, in this process's session or both in one
    new session (one scheduling group, as programs from another terminal), gone afterwards."""
    busy = _benchmark_module(monkeypatch, "busy")
    before = _hogs_running()
    with busy.hogs(2, own_session=own_session):
        started, waited = {}, 0
        while len(started) < 2:  # the shell starts its hogs after it starts
            started = {p: s for p, s in _hogs_running().items() if p not in before}
            waited += 1
            assert waited < 10**5, "the hogs never started"  # a bound on a hang, not a timing
        sessions = set(started.values())
        assert len(started) == 2 and len(sessions) == 1
        assert (sessions.pop() != os.getsid(0)) == own_session
    assert not set(started) & set(_hogs_running())


def fake_busy_machine(monkeypatch, seconds):
    """benchmarks/busy.py with its hogs and its timer faked: each command takes
    ``seconds(load, floor, argv)`` under the load whose hogs run (``floor``: the reference loop)."""
    busy = _benchmark_module(monkeypatch, "busy")
    current = []  # the load whose hogs run now

    @contextlib.contextmanager
    def fake_hogs(count, own_session=False):
        current.append((count, own_session))
        yield
        current.pop()

    def fake_timed(argv, env):
        floor = argv[1] == "-c" and argv[2].startswith(busy.REFERENCE_LOOP.partition("{")[0])
        return seconds(current[-1], floor, argv)

    monkeypatch.setattr(busy, "hogs", fake_hogs)
    monkeypatch.setattr(busy, "timed", fake_timed)
    monkeypatch.setattr(busy, "vaekit_command", lambda: ["vaekit"])
    return busy


def test_busy_table_divides_each_ratio_by_the_floor_of_its_load(monkeypatch, capsys, tmp_path):
    """The busy table's floor (the one-thread loop) is timed under each load, and each
    command's ratio to its idle time is divided by the floor's ratio under the same load."""
    # Seconds by load: the floor's and every command's, each slowed by its own factor.
    slowdown = {(0, False): 1.0, (1, False): 1.1, (2, False): 1.5, (2, True): 1.25}
    floor_slowdown = {(0, False): 1.0, (1, False): 1.0, (2, False): 1.5, (2, True): 1.0}

    def seconds(load, floor, argv):
        if floor:
            return 4.0 * floor_slowdown[load]
        return 10.0 * slowdown[load] * (2 if "--threads" in argv else 1)

    busy = fake_busy_machine(monkeypatch, seconds)
    busy.busy_table("mnist-small", str(tmp_path), rounds=1, quick=True)
    out = capsys.readouterr().out
    floor = next(line for line in out.splitlines() if line.startswith(f"| {busy.REFERENCE_NAME}"))
    assert floor.split(" | ")[1:] == ["4.0", "4.0", "1.00", "6.0", "1.50", "4.0", "1.00 |"]
    default = next(line for line in out.splitlines() if line.startswith("| default (1 thread)"))
    cells = default.strip("| ").split(" | ")
    # idle; then per load: seconds, ÷ idle (verdict), ÷ the floor's, ÷ default idle
    assert cells[1:] == [
        "10.0",
        "11.0", "1.10 (met)", "1.10", "1.10",
        "15.0", "1.50 (missed)", "1.00", "1.50",
        "12.5", "1.25 (met)", "1.25", "1.25",
    ]  # fmt: skip


def test_busy_table_pairs_each_loaded_run_with_an_idle_run_just_before_it(
    monkeypatch, capsys, tmp_path
):
    """A host whose speed drifts (here: 10% slower after every idle run) must not show up as a
    cost of the load: each loaded run is divided by the idle run of the same command and
    setting just before it, and the ratios are the loads' own, round after round."""
    slowdown = {(0, False): 1.0, (1, False): 1.1, (2, False): 1.5, (2, True): 1.25}
    drift = [1.0]

    def seconds(load, floor, argv):
        if load == (0, False):
            drift[0] *= 1.1
        return (4.0 if floor else 10.0) * slowdown[load] * drift[0]

    busy = fake_busy_machine(monkeypatch, seconds)
    busy.busy_table("mnist-small", str(tmp_path), rounds=3, quick=True)
    lines = capsys.readouterr().out.splitlines()
    floor = next(line for line in lines if line.startswith(f"| {busy.REFERENCE_NAME}"))
    assert floor.strip("| ").split(" | ")[3::2] == ["1.10", "1.50", "1.25"]
    rows = [line.strip("| ").split(" | ") for line in lines if line.startswith("| --threads 2")]
    assert len(rows) == 4  # two settings, two commands
    for cells in rows:
        # per load: seconds, ÷ idle (verdict), ÷ the floor's, ÷ default idle
        assert cells[3::4] == ["1.10 (met)", "1.50 (missed)", "1.25 (met)"], cells
        assert cells[4::4] == ["1.00", "1.00", "1.00"], cells
