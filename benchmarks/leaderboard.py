"""The likelihood leaderboard: test NLL of each model after a fixed budget of work (TFLOP).

Protocol (MNIST, as Burda et al. 2015): training images dynamically binarized (a fresh Bernoulli
sample per batch), the test set binarized once with a fixed seed; test NLL = −mean L_5000 over
all 10,000 test images (the importance-weighted bound with k = 5000), test −ELBO a single-sample
estimate. Fashion-MNIST: the same protocol on its grey levels (dynamic binarization, test set
binarized once), which has no published one-layer numbers to compare with.

Every model trains with Adam (lr 1e-3 decayed ×0.999 per epoch), batch 100, seed 0, on the torch
engine (``--engine numpy`` for the models it has; evaluation always runs on torch). The
architectures follow Burda et al.: 784-200-200-50 (tanh) for one stochastic layer, and
784-200-200-100 with 100-100-50 above it for two, except that the VampPrior models use ReLU:
with tanh their posteriors collapsed (one layer: KL 0 from the fifth epoch on mnist-small, a test
−ELBO of 206 nats after 30 epochs there and a training loss of 206 after 25 epochs of MNIST; two
layers: KL 0.6 nats and a training loss of 207 after 10 epochs of mnist-small, against 9.1 and
174 with ReLU), while the ReLU models use their latents from the start. ``hvae-vamp`` also
raises its KL weight from 0 to 1 over its first 50 epochs (Tomczak & Welling warm up over 100):
without it the top layer went unused (none of z2's 50 units active on the test set after 30
CPU-minutes, a training loss 5.5 nats above one-layer ``vamp`` at the same epoch); with it, 11
were active and the training loss at epoch 70 was 94.49 nats against 98.65 without (``vamp``:
93.21).

The budget is work: the floating-point operations of the model's matrix products in training,
forward and backward, in TFLOP (10^12), counted from the architecture by
:func:`vaekit.model.flops.epoch_flops` (an epoch's work: its examples times the FLOPs per
example, for the VampPrior with its pseudo-inputs' share of each step). The work of an epoch
does not depend on the machine or on what runs beside it, so a row is saved at the same epoch
everywhere, and a row can train in the background: only its wall time changes. The default
budgets, 123.9 and 441.7 TFLOP, are the work of ``hvae-vamp``'s MNIST rows at 30 and 120
CPU-minutes of the budgets before (193 and 688 epochs; :data:`DEFAULT_BUDGETS`), rounded down
so that the same run saves them at the same epochs. CPU time (the process's CPU seconds divided
by its threads), wall time and the processors the training run ran on (``processors.json``)
are kept beside the work in each row as observations: a CPU-minute buys more work on a faster
processor (``iwae`` reached 282 epochs in 30 CPU-minutes on an AMD EPYC and 438 on an Intel
Xeon). Training takes one thread unless ``--threads`` says otherwise (the count is kept in the
run, so a resume sums alike): beside other work a second thread mostly waits for a core another
program holds. With more, the script sets OMP_WAIT_POLICY=PASSIVE (unless it is set) so that
threads waiting for each other sleep instead of spinning: beside a busy core, 0.2 CPU-minutes
of training on mnist-small reached 17 epochs spinning and 50 passive; on a quiet machine an
epoch of the vamp model on MNIST took 7.1 CPU-seconds per thread passive against 6.6 spinning
(OMP_WAIT_POLICY=ACTIVE), and beside a `yes` process 6.0 against 15.3 (2 epochs each, 2
threads, the Xeon).

At the first epoch end past each budget the weights are saved as a run directory; afterwards
each run is evaluated (a row evaluated before is read back, not evaluated again).

The model's training run (``DATA-MODEL-training`` beside the rows) is checkpointed every epoch,
weights, optimizer and generators, with the work, CPU and wall minutes spent so far: the same
command after a stop resumes it where it stopped, losing at most one epoch, and a larger budget
extends it (``--budgets 120 440`` after ``--budgets 120`` trains on from the 120-TFLOP point).
The resumed run takes exactly the steps the uninterrupted one would have taken. A training run
from before budgets were work (its epochs recorded CPU minutes alone) resumes too, its work
counted from its epochs; a budget it has passed without a row of that budget is refused.

    python benchmarks/leaderboard.py vae --budgets 123.9 441.7  # one model: both rows, one run
    python benchmarks/leaderboard.py --list                   # the models and their commands
    python benchmarks/leaderboard.py --table                  # the table of every saved row
    python benchmarks/leaderboard.py vamp --quick             # a smoke run on mnist-small

Each row is saved as JSON beside its run (``--out``, default benchmarks/results/leaderboard) and
printed with the exact command that produced it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

# before torch loads OpenMP, which reads it once (see the module docstring)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


from run import processor_name  # benchmarks/run.py, beside this script

from vaekit import disk
from vaekit.config.settings import ModelConfig, TrainConfig
from vaekit.data.pipeline import TrainingData
from vaekit.engines import Engine
from vaekit.errors import ConfigError, VaekitError
from vaekit.measure.evaluation import evaluate_elbo, iwae_log_likelihood
from vaekit.model import flops, parameters
from vaekit.runs import checkpoint, config_file, layout, loading, lock
from vaekit.runs.metrics import append_metrics, keep_metrics_until, read_metrics, write_metrics
from vaekit.text import plural
from vaekit.train.loop import LoopState, fit
from vaekit.train.start import engine_for

#: Where each data set is looked for when --data-dir is not given (if that directory exists).
DATA_DIRS = {
    "mnist": Path(__file__).resolve().parents[2] / "shared" / "data",
    "fashion-mnist": Path("/usr/share/datasets"),
}
ONE_LAYER = {"hidden": (200, 200), "latent_dim": 50, "activation": "tanh"}
TWO_LAYERS = {
    "hidden": (200, 200),
    "latent_dim": 100,
    "top_latent_dim": 50,
    "top_hidden": (100, 100),
    "activation": "tanh",
}


@dataclass(frozen=True)
class Entry:
    """A leaderboard model: its settings (``training``: TrainConfig fields that differ from the
    protocol's) and the published MNIST NLL of the same model."""

    description: str
    model: dict
    published: str = ""
    training: dict = field(default_factory=dict)


#: Epochs over which hvae-vamp's KL weight rises from 0 to 1 (see the module docstring).
HVAE_VAMP_WARMUP_EPOCHS = 50

MODELS = {
    "vae": Entry("VAE, one layer, ELBO", ONE_LAYER, "86.76 (Burda et al. 2015, k = 1)"),
    "iwae": Entry(
        "IWAE, one layer, k = 5",
        {**ONE_LAYER, "objective": "iwae", "iw_samples": 5},
        "85.54 (Burda et al. 2015, k = 5; 84.78 with k = 50)",
    ),
    "vamp": Entry(
        "VAE + VampPrior (500 pseudo-inputs), one layer (ReLU), ELBO",
        {**ONE_LAYER, "activation": "relu", "prior": "vamp"},
        "85.57 (Tomczak & Welling 2018, 300-300 MLP)",
    ),
    "iaf": Entry(
        "VAE + IAF (2 steps), one layer, ELBO", {**ONE_LAYER, "flow": "iaf", "flow_steps": 2}
    ),
    "hvae-iwae": Entry(
        "IWAE, two stochastic layers (100, 50), k = 5",
        {**TWO_LAYERS, "objective": "iwae", "iw_samples": 5},
        "83.89 (Burda et al. 2015, k = 5; 82.90 with k = 50)",
    ),
    "hvae-vamp": Entry(
        "VAE + VampPrior, two stochastic layers (100, 50; ReLU), ELBO, "
        f"KL warm-up over {HVAE_VAMP_WARMUP_EPOCHS} epochs",
        {**TWO_LAYERS, "activation": "relu", "prior": "vamp"},
        "83.19 (Tomczak & Welling 2018, their HVAE)",
        {"kl_warmup": HVAE_VAMP_WARMUP_EPOCHS},
    ),
    # hvae-vamp with x ↔ z1 convolutional (Tomczak & Welling's convHVAE gates its convolutions;
    # these are plain ReLU ones): 1→16→16 channels by two stride-2 4×4 convolutions (28 → 14 →
    # 7), a dense layer of 200 units, z1 of 100, the decoder their mirror image; channels chosen
    # so that a training step costs under 2× hvae-vamp's matrix-product FLOPs (forward and
    # backward): 19.77 against 10.70 MFLOP per example at batch 100 (1.85×; 1.19 against 0.64
    # TFLOP per MNIST epoch), in both mostly the 500 pseudo-inputs that each step passes
    # through the encoder and q(z2|z1) (13.93 and 7.60 MFLOP per example).
    "hvae-vamp-conv": Entry(
        "VAE + VampPrior, two stochastic layers (100, 50; ReLU), conv encoder and decoder "
        f"(16-16 channels, 200 units), ELBO, KL warm-up over {HVAE_VAMP_WARMUP_EPOCHS} epochs",
        {
            **TWO_LAYERS,
            "activation": "relu",
            "prior": "vamp",
            "arch": "conv",
            "conv_channels": (16, 16),
            "hidden": (200,),
        },
        "81.09 (Tomczak & Welling 2018, their convHVAE: gated convolutions)",
        {"kl_warmup": HVAE_VAMP_WARMUP_EPOCHS},
    ),
    "hvae-vamp-gated": Entry(
        "VAE + VampPrior (500 pseudo-inputs), two stochastic layers (100, 50), gated dense "
        f"layers, ELBO, KL warm-up over {HVAE_VAMP_WARMUP_EPOCHS} epochs",
        {**TWO_LAYERS, "activation": "gated", "prior": "vamp"},
        "83.19 (Tomczak & Welling 2018, their HVAE)",  # whose dense layers are gated
        {"kl_warmup": HVAE_VAMP_WARMUP_EPOCHS},
    ),
    "hvae-vamp-iwae": Entry(
        "VAE + VampPrior, two stochastic layers (100, 50; ReLU), IWAE k = 5, KL warm-up over "
        f"{HVAE_VAMP_WARMUP_EPOCHS} epochs",
        {**TWO_LAYERS, "activation": "relu", "prior": "vamp", "objective": "iwae", "iw_samples": 5},
        training={"kl_warmup": HVAE_VAMP_WARMUP_EPOCHS},
    ),
    "vamp-gated": Entry(
        "VAE + VampPrior (500 pseudo-inputs), one layer, gated dense layers, ELBO",
        {**ONE_LAYER, "activation": "gated", "prior": "vamp"},
    ),
}


#: The budgets (TFLOP) when none are given: the work of hvae-vamp's MNIST rows at 30 and 120
#: CPU-minutes, 193 and 688 epochs of 0.64212 TFLOP (123.929 and 441.779), rounded down to
#: 0.1 TFLOP, so that its training run saves them at those epochs: the issue's targets.
DEFAULT_BUDGETS = (123.9, 441.7)
#: The budget of --quick (TFLOP): a few epochs of mnist-small.
QUICK_BUDGET = 0.05
#: A row's directory name ends with its budget and this unit: ``mnist-vae-123.9tflop``.
BUDGET_UNIT = "tflop"
#: A row's evaluation, beside its run.
ROW_FILE = "leaderboard.json"
#: The processors a training run (or a row cut from it) ran on, as a JSON list.
PROCESSORS_FILE = "processors.json"


class BudgetSpent(Exception):
    """Raised by the epoch hook once the last budget is reached."""


def cpu_minutes(threads: int) -> float:
    """This process's CPU time (all threads, user + system) divided by the training's
    ``threads``, in minutes: the wall time the work would take with their cores to itself."""
    times = os.times()
    return (times.user + times.system) / threads / 60


def read_processors(run_dir: Path) -> list[str]:
    """The processors ``run_dir`` ran on, in the order it first ran on each."""
    path = run_dir / PROCESSORS_FILE
    return json.loads(path.read_text()) if path.exists() else []


def write_processors(run_dir: Path, processors: list[str]) -> None:
    """Replace ``run_dir``'s list of processors, atomically."""
    disk.write_atomic(run_dir / PROCESSORS_FILE, (json.dumps(processors) + "\n").encode())


def train_config(args: argparse.Namespace, entry: Entry) -> TrainConfig:
    """The protocol's training settings, with ``entry``'s own on top."""
    protocol = TrainConfig(
        data=args.data,
        data_dir=str(args.data_dir) if args.data_dir else None,
        engine=args.engine,
        binarize="dynamic",
        batch_size=100,
        lr=1e-3,
        lr_decay=0.999,
        epochs=1_000_000,
        seed=args.seed,
        sample_every=1_000_000,
        threads=args.threads,
    )
    return replace(protocol, **entry.training)


def row_dir(args: argparse.Namespace, budget: float) -> Path:
    """The run directory of the row of ``budget`` TFLOP."""
    return args.out / f"{args.data}-{args.model}-{budget:g}{BUDGET_UNIT}"


def row_budget(run_dir: Path) -> float:
    """The budget, TFLOP, that a row's directory name ends with."""
    return float(run_dir.name.rsplit("-", 1)[1].removesuffix(BUDGET_UNIT))


def training_dir(args: argparse.Namespace) -> Path:
    """The resumable run that the rows of ``args.model`` on ``args.data`` are cut from."""
    return args.out / f"{args.data}-{args.model}-training"


def resume(
    run_dir: Path, model: ModelConfig, config: TrainConfig, engine: Engine
) -> tuple[LoopState, list[dict]]:
    """The loop state and the epoch records (with their cumulative work, CPU and wall minutes)
    of an earlier training run in ``run_dir``, with ``engine`` restored to its last epoch; a fresh
    start when there is none. A run with other settings is refused (ConfigError)."""
    if not layout.is_run(run_dir):
        config_file.write_config(run_dir, model, config, "benchmark")
        return LoopState.fresh(config.seed), []
    saved_model, saved_config, _ = config_file.read_config(run_dir)
    if (saved_model, replace(saved_config, data_dir=None)) != (
        model,
        replace(config, data_dir=None),
    ):
        raise ConfigError(
            f"{run_dir} was trained with other settings; remove it to start this model again"
        )
    checkpoint.recover(run_dir, model)  # finish or undo a save that a stop interrupted
    if not (run_dir / layout.STATE_FILE).exists():  # stopped before its first epoch ended
        return LoopState.fresh(config.seed), []
    state = LoopState.from_json(checkpoint.load_checkpoint(run_dir, engine))
    keep_metrics_until(run_dir, state.epoch)
    return state, read_metrics(run_dir)


def passed_budgets(progress_dir: Path, rows: dict[float, Path], done: float) -> list[Path]:
    """The rows of the budgets (TFLOP: their run directories) that a training run which has
    done ``done`` TFLOP has passed; each must have been saved (a ConfigError otherwise: a
    run of budgets in CPU time, or one that trained with fewer budgets, kept no weights there)."""
    passed = [(budget, run_dir) for budget, run_dir in rows.items() if budget <= done]
    for budget, run_dir in passed:
        if not (run_dir / layout.CONFIG_FILE).exists():
            raise ConfigError(
                f"{progress_dir} has trained past {budget:g} TFLOP (to {done:.2f}) without "
                f"saving that row; give budgets above {done:.2f} TFLOP, or remove it to train "
                "the model again"
            )
    return [run_dir for _, run_dir in passed]


def save_row(
    run_dir: Path, engine: Engine, config: TrainConfig, records: list[dict], processors: list[str]
) -> Path:
    """Save the row of ``run_dir`` at the last of ``records``: the settings, the weights, the
    records so far and the processors its training run has run on."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / ROW_FILE).unlink(missing_ok=True)  # an earlier run's evaluation
    config_file.write_config(run_dir, engine.config, config, "benchmark")
    checkpoint.save_weights(run_dir, engine)
    write_metrics(run_dir, records)
    write_processors(run_dir, processors)
    last = records[-1]
    print(
        f"saved {run_dir} after {plural(last['epoch'], 'epoch')}, {last['tflop']:.2f} TFLOP "
        f"({last['cpu_minutes']:.1f} CPU-min)"
    )
    return run_dir


def train(args: argparse.Namespace, entry: Entry, config: TrainConfig, clock=None) -> list[Path]:
    """Train until the largest budget (TFLOP), resuming the model's training run where an
    earlier one stopped; save a row at the first epoch end past each budget. Every epoch is
    checkpointed, so a stopped run loses at most one epoch; each epoch's record keeps its work
    and, as observations, the ``clock``'s minutes (CPU time by default) and the wall time."""
    clock = clock or (lambda: cpu_minutes(config.threads))
    data = TrainingData.load(config)
    model = ModelConfig(input_shape=tuple(data.train.shape[1:]), **entry.model)
    engine = engine_for(model, config)
    epoch_work = flops.epoch_flops(model, len(data.train), config.batch_size)

    def work(epochs: int) -> float:
        return flops.tflop(epochs * epoch_work)

    progress_dir = training_dir(args)
    progress_dir.mkdir(parents=True, exist_ok=True)
    with lock.writing(progress_dir):
        state, records = resume(progress_dir, model, config, engine)
        # the work of every epoch, also of a run from before records kept it
        records = [dict(r, tflop=work(r["epoch"])) for r in records]
        spent = records[-1] if records else {"cpu_minutes": 0.0, "wall_minutes": 0.0}
        budgets = sorted(args.budgets)
        rows = {b: row_dir(args, b) for b in budgets}
        saved = passed_budgets(progress_dir, rows, work(state.epoch))
        budgets = budgets[len(saved) :]
        if state.epoch:
            print(
                f"resuming {progress_dir} after epoch {state.epoch} ({work(state.epoch):.2f} "
                f"TFLOP, {spent['cpu_minutes']:.1f} CPU-min)"
            )
        processors = read_processors(progress_dir)
        if (processor := processor_name()) not in processors:
            processors.append(processor)
            write_processors(progress_dir, processors)
        cpu_start = clock() - spent["cpu_minutes"]
        wall_start = time.perf_counter() - 60 * spent["wall_minutes"]

        def on_epoch(engine, record, state) -> None:
            done, cpu = work(record["epoch"]), clock() - cpu_start
            wall = (time.perf_counter() - wall_start) / 60
            records.append(dict(record, tflop=done, cpu_minutes=cpu, wall_minutes=wall))
            if record["epoch"] % 25 == 0:
                print(
                    f"epoch {record['epoch']}: loss {record['loss']:.2f} "
                    f"({done:.2f} TFLOP, {cpu:.1f} CPU-min)"
                )
            while budgets and done >= budgets[0]:
                run_dir = row_dir(args, budgets.pop(0))
                saved.append(save_row(run_dir, engine, config, records, processors))
            append_metrics(progress_dir, records[-1])
            checkpoint.save_checkpoint(progress_dir, engine, state.to_json())
            if not budgets:
                raise BudgetSpent

        print(
            f"{args.model}: {parameters.count(model):,} parameters, "
            f"{flops.training_flops(model, config.batch_size) / 1e6:.3f} MFLOP per training "
            f"example, {flops.tflop(epoch_work):.4f} TFLOP an epoch; {entry.description}"
        )
        if budgets:
            with contextlib.suppress(BudgetSpent):
                fit(
                    engine,
                    config,
                    TrainingData(train=data.train, test=None),
                    state=state,
                    on_epoch=on_epoch,
                )
    return saved


def evaluate(args: argparse.Namespace, entry: Entry, config: TrainConfig, run_dir: Path) -> dict:
    """The row of a saved run: test −ELBO and NLL (−L_k), with their evaluation time."""
    test = TrainingData.load(config).test
    engine = loading.open_run(run_dir, "torch")
    last = read_metrics(run_dir)[-1]
    started = time.perf_counter()
    elbo = evaluate_elbo(engine, test, seed=0)
    nll = -iwae_log_likelihood(engine, test, args.iw_samples, seed=0).mean()
    row = {
        "data": args.data,
        "model": args.model,
        "description": entry.description,
        "parameters": parameters.count(engine.config),
        "mflop_per_example": flops.training_flops(engine.config, config.batch_size) / 1e6,
        "budget_tflop": row_budget(run_dir),
        "tflop": last["tflop"],
        "epochs": last["epoch"],
        "cpu_minutes": last["cpu_minutes"],
        "wall_minutes": last["wall_minutes"],
        "processors": read_processors(run_dir),
        "test_elbo_loss": elbo.loss,
        "test_nll": float(nll),
        "iw_samples": args.iw_samples,
        "evaluation_minutes": (time.perf_counter() - started) / 60,
        "published": entry.published if args.data == "mnist" else "",
        "seed": args.seed,
        "command": "python " + " ".join(sys.argv),
    }
    (run_dir / ROW_FILE).write_text(json.dumps(row, indent=2) + "\n")
    return row


def evaluated_row(args: argparse.Namespace, run_dir: Path) -> dict | None:
    """The row already evaluated for ``run_dir`` with ``args.iw_samples`` samples, if any: a
    resumed training run lists the rows it saved before, which need no second evaluation."""
    path = run_dir / ROW_FILE
    if not path.exists():
        return None
    row = json.loads(path.read_text())
    return row if row.get("iw_samples") == args.iw_samples else None


def table(rows: list[dict]) -> str:
    """The leaderboard as a Markdown table, by data set, budget and NLL: the work each row
    trained (TFLOP), its epochs, and as observations its CPU and wall minutes and the processors
    it ran on. A row saved before rows recorded its work or processors says "not recorded"."""
    lines = [
        "| data | model | parameters | TFLOP | epochs | CPU-min | wall (min) | processor "
        "| test −ELBO | test NLL | evaluation (min) | published |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- |",
    ]
    for r in sorted(rows, key=lambda r: (r["data"], r.get("budget_tflop", 0.0), r["test_nll"])):
        work = f"{r['tflop']:,.2f}" if "tflop" in r else "not recorded"
        processors = ", ".join(r["processors"]) if "processors" in r else "not recorded"
        lines.append(
            f"| {r['data']} | {r['model']} | {r['parameters']:,} | {work} | {r['epochs']:,} "
            f"| {r['cpu_minutes']:.0f} | {r['wall_minutes']:.0f} | {processors} "
            f"| {r['test_elbo_loss']:.2f} | **{r['test_nll']:.2f}** (k = {r['iw_samples']:,}) "
            f"| {r['evaluation_minutes']:.1f} | {r['published']} |"
        )
    return "\n".join(lines)


def argument_parser() -> argparse.ArgumentParser:
    """The command line: a model and its budgets, or --list or --table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", choices=sorted(MODELS))
    parser.add_argument("--data", choices=("mnist", "fashion-mnist", "mnist-small"))
    parser.add_argument("--data-dir", type=Path, help="default: DATA_DIRS, where present")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/leaderboard"))
    parser.add_argument(
        "--budgets",
        type=float,
        nargs="+",
        metavar="TFLOP",
        help=f"budgets of training work, TFLOP (default: {' '.join(map(str, DEFAULT_BUDGETS))})",
    )
    parser.add_argument("--iw-samples", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads of the training, kept in its run (default 1: a row beside other work "
        "wastes nothing waiting for a thread whose core another program took)",
    )
    parser.add_argument(
        "--engine", choices=("torch", "numpy"), default="torch", help="the training engine"
    )
    parser.add_argument("--evaluate-only", action="store_true", help="evaluate saved runs")
    parser.add_argument("--list", action="store_true", help="the models and their commands")
    parser.add_argument("--table", action="store_true", help="print every saved row")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"mnist-small, {QUICK_BUDGET} TFLOP, k = 50 (a smoke run)",
    )
    return parser


def main() -> None:
    parser = argument_parser()
    args = parser.parse_args()
    if args.list:
        width = max(map(len, MODELS))
        budgets = " ".join(map(str, DEFAULT_BUDGETS))
        for name, entry in MODELS.items():
            print(f"{name:<{width}} {entry.description}")
            print(f"{'':<{width}} python benchmarks/leaderboard.py {name} --budgets {budgets}")
        return
    if args.table:
        rows = [json.loads(p.read_text()) for p in sorted(args.out.glob(f"*/{ROW_FILE}"))]
        print(table(rows))
        return
    if args.model is None:
        parser.error("name a model (see --list), or pass --list or --table")
    if args.quick:
        args.data = args.data or "mnist-small"
        args.budgets = args.budgets or [QUICK_BUDGET]
        args.iw_samples = 50
    args.data = args.data or "mnist"
    args.budgets = args.budgets or list(DEFAULT_BUDGETS)
    default_dir = DATA_DIRS.get(args.data)
    if args.data_dir is None and default_dir is not None and default_dir.is_dir():
        args.data_dir = default_dir
    entry = MODELS[args.model]
    config = train_config(args, entry)
    try:
        runs = (
            [row_dir(args, b) for b in sorted(args.budgets)]
            if args.evaluate_only
            else train(args, entry, config)
        )
        rows = [
            (None if args.evaluate_only else evaluated_row(args, run_dir))
            or evaluate(args, entry, config, run_dir)
            for run_dir in runs
        ]
    except VaekitError as exc:
        parser.exit(2, f"leaderboard.py: error: {exc}\n")
    print()
    print(table(rows))
    print(f"\ncommand: python {' '.join(sys.argv)}  (seed {args.seed})")


if __name__ == "__main__":
    main()
