"""Data-parallel training under torchrun (gloo on the CPU): the same path as one process with the
same global batch, disjoint shares of every batch, one writer, and --resume."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from vaekit.engines.torch.distributed import Group, from_environment
from vaekit.runs import layout
from vaekit.runs.metrics import read_metrics

#: Seconds a command may take before it counts as hung: a guard, never a pass/fail criterion.
GUARD = 900
TRAIN = [
    "train",
    "--data",
    "mnist-small",
    "--hidden",
    "64",
    "--latent-dim",
    "8",
    "--batch-size",
    "100",
    "--seed",
    "5",
    "--sample-every",
    "1000",
]


#: Adam steps in two epochs of mnist-small (5,000 training images) at 100 per batch, at rate 1e-3.
STEPS, LR = 100, 1e-3
#: Relative rounding of a float32 gradient summed over a batch in another order (two shares
#: all-reduced rather than one batch): about sqrt(100) ulps of 2**-24 each, taken as 1e-6.
ROUNDING = 1e-6


def torchrun(processes: int, *argv: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
        "-m",
        "vaekit",
        *argv,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=GUARD)


def vaekit(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "vaekit", *argv]
    return subprocess.run(command, capture_output=True, text=True, timeout=GUARD, env=env)


def losses(run: Path) -> list[tuple[float, float]]:
    return [(r["loss"], r["test_loss"]) for r in read_metrics(run)]


def weights(run: Path) -> dict[str, np.ndarray]:
    return load_file(run / layout.WEIGHTS_FILE)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, subprocess.CompletedProcess | Path]:
    """One process, two processes, and two processes stopped after one epoch then resumed."""
    root = tmp_path_factory.mktemp("ddp")
    single, double, resumed = root / "single", root / "double", root / "resumed"
    done = {
        "single": vaekit(*TRAIN, "--epochs", "2", "--out", str(single)),
        "double": torchrun(2, *TRAIN, "--epochs", "2", "--out", str(double)),
        "first": torchrun(2, *TRAIN, "--epochs", "1", "--out", str(resumed)),
    }
    done["resume"] = torchrun(2, "train", "--resume", "--out", str(resumed), "--epochs", "2")
    free_bits = ["--free-bits", "0.5", "--epochs", "1"]  # uses the global batch's KL per dimension
    done["single_fb"] = vaekit(*TRAIN, *free_bits, "--out", str(root / "single-fb"))
    done["double_fb"] = torchrun(2, *TRAIN, *free_bits, "--out", str(root / "double-fb"))
    for name, proc in done.items():
        assert proc.returncode == 0, (name, proc.stderr[-3000:])
    return dict(done, single_dir=single, double_dir=double, resumed_dir=resumed, root=root)


def test_two_processes_follow_the_one_process_loss_curve(runs):
    """The two runs sum each gradient in another order, so they differ by rounding. Adam divides
    each element's step by that element's RMS gradient: for a typical element a relative rounding
    r changes the step by about r·lr, so after STEPS steps the typical (median) gap is at most
    STEPS·lr·r. In the rare element whose gradient is nearly zero the rounding is amplified
    (observed 1.7e-5 in one of 512); a path that really diverged would differ by a whole step."""
    one, two = losses(runs["single_dir"]), losses(runs["double_dir"])
    assert len(one) == len(two) == 2
    np.testing.assert_allclose(np.array(two), np.array(one), rtol=1e-5)
    assert read_metrics(runs["double_dir"])[-1]["step"] == STEPS
    w1, w2 = weights(runs["single_dir"]), weights(runs["double_dir"])
    for name in w1:
        gap = np.abs(w2[name] - w1[name])
        assert np.median(gap) <= STEPS * LR * ROUNDING, name
        assert gap.max() < LR, name


def test_free_bits_follow_the_one_process_run_too(runs):
    one, two = losses(runs["root"] / "single-fb"), losses(runs["root"] / "double-fb")
    np.testing.assert_allclose(np.array(two), np.array(one), rtol=1e-5)


def test_only_rank_0_writes_and_speaks(runs):
    out = runs["double"].stdout
    assert out.count("training ") == 1 and "on 2 processes" in out
    assert out.count("run saved in") == 1
    assert len(losses(runs["double_dir"])) == 2  # one metrics line per epoch, not per rank
    assert (runs["double_dir"] / "samples.png").is_file()
    assert not list(runs["double_dir"].glob("*.tmp"))
    assert (runs["double_dir"] / layout.LOCK_FILE).read_text() == ""  # rank 0's, released


def test_resume_under_torchrun_continues_the_same_run(runs):
    assert "resuming" in runs["resume"].stdout and "after epoch 1" in runs["resume"].stdout
    np.testing.assert_allclose(
        np.array(losses(runs["resumed_dir"])), np.array(losses(runs["double_dir"])), rtol=1e-6
    )
    w_resumed, w_straight = weights(runs["resumed_dir"]), weights(runs["double_dir"])
    for name in w_straight:
        np.testing.assert_allclose(w_resumed[name], w_straight[name], atol=1e-6, err_msg=name)


def _rank_environment(rank: int = 1, world: int = 2) -> dict[str, str]:
    return dict(
        os.environ,
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT="1",  # never reached: the errors come before joining the group
    )


@pytest.mark.parametrize(
    "argv, words",
    [
        ([*TRAIN, "--engine", "numpy", "--out", "{out}"], "use --engine torch"),
        (TRAIN, "give the run directory with --out"),
    ],
)
def test_what_cannot_run_distributed_is_a_one_line_error(tmp_path, argv, words):
    argv = [a.replace("{out}", str(tmp_path / "run")) for a in argv]
    proc = vaekit(*argv, env=_rank_environment())
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], proc.stderr
    assert not (tmp_path / "run").exists()


def test_group_from_environment(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert from_environment() is None
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert from_environment() is None
    for name, value in (("WORLD_SIZE", "4"), ("RANK", "3"), ("LOCAL_RANK", "1")):
        monkeypatch.setenv(name, value)
    assert from_environment() == Group(rank=3, world_size=4, local_rank=1)


@pytest.mark.parametrize("batch", [1, 3, 100, 127, 128])
@pytest.mark.parametrize("world", [1, 2, 3, 8])
def test_ranks_share_each_batch_disjointly_and_completely(batch, world):
    rows = [Group(rank, world, rank).rows(batch) for rank in range(world)]
    covered = [i for part in rows for i in range(batch)[part]]
    assert covered == list(range(batch))
    sizes = [len(range(batch)[part]) for part in rows]
    assert max(sizes) - min(sizes) <= 1
