"""Speed on the machines people have: how many threads pay, and what a busy machine costs.

Users run vaekit beside a browser, an IDE or a second training run. This script measures, in one
run and as ratios, what that does to vaekit, with a CPU hog (``yes > /dev/null``, started from
this process as a user starts one from their shell) standing for the other work:

1. **Where two threads pay**: training steps per second of the MLP model (784-W-20, Bernoulli,
   Adam) against its width W and batch B, with one thread and with two (waiting threads asleep,
   OMP_WAIT_POLICY=PASSIVE as the command line sets it, or spinning, ACTIVE), on the machine
   idle and beside one hog. Each setting runs in a fresh process; best of ``--rounds``.
2. **A busy machine**: the whole ``vaekit demo`` and ``vaekit train --data mnist --epochs 3``,
   idle and beside one and two hogs, and beside two hogs in a session of their own (as a
   program started from another terminal or the desktop runs: where the kernel schedules
   sessions as groups, it shares the cores among the groups first), with the default (one
   thread) and the candidates
   (``--threads 2``, its waiting threads asleep or spinning); medians of ``--rounds`` runs, the
   settings taking turns. Each run beside hogs comes right after an idle run of the same
   command and setting, and the ratio is the median of its time over that run's (target: at
   most 1.3): the host's speed may drift over the run. Then that ratio over the floor's (what
   the setting loses beyond what the kernel takes from any one thread), and the time over the
   default's time idle. The floor: a fixed loop of additions in one Python thread, timed idle
   and under each load after each turn of the commands.
3. **The demo and its steps**: ``vaekit demo``'s wall time against the time its training steps
   alone take in the same process (target: at most 3×).

Prints the processor and its float32 GEMM rate first: absolute times hold only on that machine.

    python benchmarks/busy.py                # MNIST from ../shared/data
    python benchmarks/busy.py --quick        # mnist-small, small grid, one round

On a 2-core AMD EPYC at 177 GFLOP/s (2048³, 2 threads), idle, the full run's busy table alone
took 33 minutes and the whole quick run 3 minutes (184 s, in another run).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from run import at_most, processor_name, table  # benchmarks/run.py, beside this script
from startup import vaekit_command  # benchmarks/startup.py, beside this script

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

#: The settings compared: extra flags and environment of each.
CANDIDATES = {
    "default (1 thread)": ([], {}),
    "--threads 2, waiting threads asleep": (["--threads", "2"], {}),
    "--threads 2, spinning (OMP_WAIT_POLICY=ACTIVE)": (
        ["--threads", "2"],
        {"OMP_WAIT_POLICY": "ACTIVE"},
    ),
}
#: The thread settings of the steps grid: (threads, OMP_WAIT_POLICY).
GRID_SETTINGS = {
    "1 thread": (1, "PASSIVE"),
    "2 asleep": (2, "PASSIVE"),
    "2 spinning": (2, "ACTIVE"),
}
#: The (width, batch) points of the steps grid.
FULL_GRID = [(w, b) for w in (200, 400, 1000, 2000) for b in (32, 128, 512)]
BUSY_TARGET = 1.3
DEMO_TARGET = 3.0


# --- the machine ---------------------------------------------------------------------------------


GEMM_RATE = """
import time, torch
torch.set_num_threads({threads})
a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
a @ b
n, start = 0, time.perf_counter()
while time.perf_counter() - start < 2:
    a @ b
    n += 1
print(n * 2 * 2048**3 / (time.perf_counter() - start) / 1e9)
"""


def gemm_rate(threads: int) -> float:
    """float32 GEMM rate, GFLOP/s, of a 2048³ product with ``threads`` threads (fresh process)."""
    code = GEMM_RATE.format(threads=threads)
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout)  # fmt: skip


def machine_line() -> str:
    """The processor, its cores and its GEMM rates: the line every table of speed stands on."""
    return (
        f"machine: {processor_name()}, {os.cpu_count()} cores; float32 GEMM 2048³: "
        f"{gemm_rate(os.cpu_count() or 1):.0f} GFLOP/s with {os.cpu_count()} threads, "
        f"{gemm_rate(1):.0f} with 1"
    )


@contextlib.contextmanager
def hogs(count: int, own_session: bool = False) -> Iterator[None]:
    """``count`` CPU hogs (``yes``, writing to /dev/null) running for the block; ``own_session``:
    all in one session of their own, as programs started from another terminal or from the
    desktop are (where the kernel schedules sessions as groups, it shares the cores among the
    groups first). One shell in a new session starts them: a hog per session would make as many
    groups."""
    if own_session:
        # Asked to stop, the shell ignores the signal, sends it to its whole process group (the
        # hogs, which stay in it) and reaps them, so none outlives the block. A list of the
        # hogs' pids would miss one started but not yet listed when the signal came.
        stop = "trap 'trap \"\" TERM; kill 0; wait; exit' TERM; "
        shell = ["sh", "-c", stop + "yes > /dev/null & " * count + "wait"]
        # Its stderr is dropped: the shell reports each hog it kills ("Terminated").
        quiet = {"stderr": subprocess.DEVNULL, "start_new_session": True}
        procs = [subprocess.Popen(shell, **quiet)] if count else []
    else:
        procs = [subprocess.Popen(["yes"], stdout=subprocess.DEVNULL) for _ in range(count)]
    try:
        yield
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait()


# --- 1. where two threads pay --------------------------------------------------------------------

STEPS = """
import json, sys, time
import numpy as np
import torch  # first: cpu_threads sets the threads of the torch it finds imported
from vaekit.config.settings import ModelConfig, TrainConfig
from vaekit.engines.threads import cpu_threads
from vaekit.train.start import engine_for

threads, grid, seconds = json.loads(sys.argv[1])
x = (np.random.default_rng(0).random((4096, 784)) > 0.5).astype(np.float32)
rates = []
with cpu_threads(threads):
    for width, batch in grid:
        config = TrainConfig(batch_size=batch, seed=0, threads=threads)
        engine = engine_for(ModelConfig(hidden=(width,), latent_dim=20), config)
        for _ in range(3):
            engine.train_step(x[:batch], 1.0)
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            row = steps * batch % (len(x) - batch)
            engine.train_step(x[row : row + batch], 1.0)
            steps += 1
        rates.append(steps / (time.perf_counter() - start))
print(json.dumps(rates))
"""


def step_rates(threads: int, policy: str, grid: list[tuple[int, int]], seconds: float) -> list:
    """Training steps per second at each (width, batch) of ``grid``, in a fresh process."""
    env = dict(os.environ, OMP_WAIT_POLICY=policy)
    argv = [sys.executable, "-c", STEPS, json.dumps([threads, grid, seconds])]
    return json.loads(subprocess.run(argv, env=env, capture_output=True, text=True,
                                     check=True).stdout)  # fmt: skip


def threads_table(grid: list[tuple[int, int]], rounds: int, seconds: float) -> None:
    """Section 1: steps/s of one thread, and two threads' speed-up over it, idle and busy."""
    for load in (0, 1):
        best: dict[str, list[float]] = {}
        with hogs(load):
            for _ in range(rounds):
                for name, (threads, policy) in GRID_SETTINGS.items():
                    rates = step_rates(threads, policy, grid, seconds)
                    best[name] = [max(a, b) for a, b in zip(best.get(name, rates), rates,
                                                            strict=True)]  # fmt: skip
        where = "idle" if not load else "beside one CPU hog"
        print(f"training steps/s, 784-W-20 MLP, {where} (best of {rounds}):\n")
        one = best["1 thread"]
        table(
            ["width W", "batch B", "1 thread, steps/s", "2 asleep ×", "2 spinning ×"],
            [
                [str(w), str(b), f"{one[i]:.0f}"]
                + [f"{best[name][i] / one[i]:.2f}" for name in ("2 asleep", "2 spinning")]
                for i, (w, b) in enumerate(grid)
            ],
        )


# --- 2. a busy machine ---------------------------------------------------------------------------


def timed(argv: list[str], env: dict[str, str]) -> float:
    """Wall seconds of one command in a fresh process (it must succeed)."""
    started = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - started


def commands(data: str, data_dir: str, out: Path, quick: bool) -> dict[str, list[str]]:
    """The two whole commands of the busy table (each replacing its own earlier run); ``quick``:
    one epoch each."""
    vaekit = vaekit_command()
    demo, epochs = (["--epochs", "1"], "1") if quick else ([], "3")
    return {
        f"vaekit demo {' '.join(demo)}".strip(): vaekit
        + ["demo", "--out", str(out / "demo"), "--quiet", *demo],
        f"vaekit train --data {data} --epochs {epochs}": vaekit
        + ["train", "--data", data, "--data-dir", data_dir, "--epochs", epochs]
        + ["--out", str(out / "train"), "--quiet", "--force"],
    }


#: The kernel's share of a core under each load, measured: a fixed count of additions by one
#: Python thread (no vaekit, no library), which no setting can speed up. Its time over its idle
#: time is the least any one-thread command can take beside that load.
REFERENCE_LOOP = "n = 0\nfor i in range({count}): n += i"
REFERENCE_NAME = "one thread of fixed work (no vaekit): the kernel's share"

#: The loads, (hogs, in a session of their own), and their columns' names.
LOADS = {(0, False): "idle", (1, False): "1 hog", (2, False): "2 hogs",
         (2, True): "2 hogs, own session"}  # fmt: skip


def busy_table(data: str, data_dir: str, rounds: int, quick: bool) -> None:
    """Section 2: each command under each load with each candidate, and the reference loop
    beside them (the floor of every one-thread command under that load), medians of
    ``rounds``. Each run under a load follows an idle run of the same command and setting, and
    its ratio is to that run: a host whose speed drifts over the tens of minutes this takes
    would otherwise show up as a cost of the load."""
    times: dict[tuple[str, tuple[int, bool], str], list[float]] = {}
    floor_times: dict[tuple[int, bool], list[float]] = {}
    additions = 5 * 10**6 if quick else 6 * 10**7  # about 0.3 s and 4 s on the 2-core AMD EPYC
    reference = [sys.executable, "-c", REFERENCE_LOOP.format(count=additions)]
    with tempfile.TemporaryDirectory() as tmp:
        argvs = commands(data, data_dir, Path(tmp), quick)
        for turn in range(rounds):
            for name, (flags, env) in sorted(CANDIDATES.items(), reverse=turn % 2 == 1):
                for command, argv in argvs.items():
                    for load in LOADS:  # idle first, then each load right after it
                        with hogs(*load):
                            seconds = timed(argv + flags, dict(os.environ, **env))
                        times.setdefault((command, load, name), []).append(seconds)
            for load in LOADS:
                with hogs(*load):
                    floor_times.setdefault(load, []).append(timed(reference, dict(os.environ)))
    idle, *loads = LOADS
    floor = {load: statistics.median(seconds) for load, seconds in floor_times.items()}
    floor_ratio = {load: paired_ratio(floor_times[load], floor_times[idle]) for load in loads}
    print(
        f"The floor: a loop of additions in one Python thread, the same count each time, run "
        f"idle and under each load after each turn of the commands; wall seconds (medians of "
        f"{rounds}); ÷ idle: the median of each turn's time over its idle time:\n"
    )
    header = ["command", "idle"]
    for load in loads:
        header += [LOADS[load], "÷ idle"]
    row = [REFERENCE_NAME, f"{floor[idle]:.1f}"]
    for load in loads:
        row += [f"{floor[load]:.1f}", f"{floor_ratio[load]:.2f}"]
    table(header, [row])
    for command in argvs:
        print(
            f"`{command}`, wall seconds (medians of {rounds}), idle and beside CPU hogs; ÷ idle: "
            f"the median of each run's time over the idle run just before it:\n"
        )
        rows = []
        default_idle = statistics.median(times[command, idle, next(iter(CANDIDATES))])
        for name in CANDIDATES:
            own_idle = statistics.median(times[command, idle, name])
            row = [name, f"{own_idle:.1f}"]
            for load in loads:
                busy = statistics.median(times[command, load, name])
                ratio = paired_ratio(times[command, load, name], times[command, idle, name])
                row += [f"{busy:.1f}", at_most(ratio, BUSY_TARGET)]
                row += [f"{ratio / floor_ratio[load]:.2f}"]
                row += [f"{busy / default_idle:.2f}"]
            rows.append(row)
        header = ["setting", "idle"]
        for load in loads:
            header += [LOADS[load], "÷ idle", "÷ the floor's", "÷ default idle"]
        table(header, rows)


def paired_ratio(busy: list[float], idle: list[float]) -> float:
    """The median over rounds of each busy time over the idle time of its round."""
    return statistics.median(b / i for b, i in zip(busy, idle, strict=True))


# --- 3. the demo and its steps -------------------------------------------------------------------

DEMO_STEPS = """
import json, sys, time
from vaekit.engines.torch import TorchEngine
from vaekit.cli import main

spent = [0.0]
train_step = TorchEngine.train_step


def timed_step(self, *args, **kwargs):
    started = time.perf_counter()
    result = train_step(self, *args, **kwargs)
    spent[0] += time.perf_counter() - started
    return result


TorchEngine.train_step = timed_step
status = main(sys.argv[1:])
print(json.dumps({"status": status, "steps": spent[0]}))
"""


def demo_table(rounds: int, quick: bool) -> None:
    """Section 3: ``vaekit demo``'s wall time against its training steps alone (``quick``: one
    epoch)."""
    walls, steps = [], []
    with tempfile.TemporaryDirectory() as tmp:
        argv = [sys.executable, "-c", DEMO_STEPS, "demo", "--out", f"{tmp}/demo", "--quiet"]
        argv += ["--epochs", "1"] if quick else []
        for _ in range(rounds):
            started = time.perf_counter()
            out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
            walls.append(time.perf_counter() - started)
            steps.append(json.loads(out.splitlines()[-1])["steps"])
    wall, step = statistics.median(walls), statistics.median(steps)
    print(f"`vaekit demo`, idle, medians of {rounds}:\n")
    table(
        ["whole command, s", "its training steps, s", "ratio (target ≤ 3)"],
        [[f"{wall:.1f}", f"{step:.1f}", at_most(wall / step, DEMO_TARGET)]],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=SHARED_DATA)
    parser.add_argument("--quick", action="store_true", help="mnist-small, a small grid, 1 round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=["threads", "busy", "demo"], help="one section alone")
    args = parser.parse_args()
    full = not args.quick and (args.data_dir / "mnist").is_dir()
    data = "mnist" if full else "mnist-small"
    rounds = args.rounds if not args.quick else 1
    grid = [(200, 32), (400, 128)] if args.quick else FULL_GRID
    started = time.perf_counter()
    print(machine_line() + "\n")
    if args.only in (None, "threads"):
        threads_table(grid, rounds, seconds=1.0 if full else 0.2)
    if args.only in (None, "busy"):
        busy_table(data, str(args.data_dir), rounds, args.quick)
    if args.only in (None, "demo"):
        demo_table(rounds, args.quick)
    print(f"(this benchmark took {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
