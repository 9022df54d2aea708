"""Ctrl-C and SIGTERM during training: a one-line message saying how to resume, exit code 130,
and a run directory that holds only whole epochs."""

import json
import os
import signal
import subprocess
import sys

import pytest

from vaekit.cli import main
from vaekit.runs import checkpoint, config_file, loading
from vaekit.runs.metrics import read_metrics


def _default_interrupt() -> None:
    """In the child before exec: Ctrl-C's default disposition, as a terminal gives it. A test
    runner started in the background by a shell without job control inherits SIGINT ignored,
    and an ignored SIGINT stays ignored across exec (the child then trains all its epochs)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_training_cleanly_and_resume_continues(tmp_path, signum, capsys):
    run = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "vaekit",
        "train",
        "--data",
        "mnist-small",
        "--epochs",
        "500",
        "--hidden",
        "32",
        "--latent-dim",
        "2",
        "--out",
        str(run),
    ]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=_default_interrupt,
    )
    try:
        for line in proc.stdout:
            if line.startswith("epoch 2/500"):
                break
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=600)  # a guard against a hang, not a time limit
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == (
        f"vaekit: interrupted; every finished epoch is saved in {run}; continue with: "
        f"vaekit train --resume --out {run}"
    )
    assert "Traceback" not in err
    checkpoint.recover(run, config_file.read_config(run)[0])
    done = json.loads((run / "state.json").read_text())["epoch"]
    assert done >= 2 and not list(run.glob("*.tmp"))
    loading.open_run(run)  # the weights load and match config.json
    assert main(["train", "--resume", "--out", str(run), "--epochs", str(done + 1), "--quiet"]) == 0
    records = read_metrics(run)
    assert [r["epoch"] for r in records] == list(range(1, done + 2))
