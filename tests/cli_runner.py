"""Running the command line inside a test: its exit code and output, and its one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from vaekit.cli import main
from vaekit.runs import layout
from vaekit.runs.metrics import read_metrics


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``vaekit ARGV`` run in this process (argv as strings)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def user_error(capsys, *argv) -> str:
    """The one line a refused command prints: exit code 2, one ``vaekit: error:`` line."""
    code, out, err = run_cli(capsys, *argv)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vaekit: error: "), err
    return lines[0]


def sample_and_evaluate(capsys, run: Path, out: Path, *labelled) -> dict:
    """``vaekit sample`` of 6 MNIST-shaped pictures (``labelled``: e.g. ``--label 3``) into
    ``out`` (.npy) and ``vaekit evaluate --iw-samples 10 --json`` of ``run``, both succeeding;
    returns the evaluation's record, whose NLL is finite and within a nat of its −ELBO."""
    code, _, err = run_cli(capsys, "sample", run, "-n", "6", *labelled, "--npy", out)
    assert code == 0, err
    assert np.load(out).shape == (6, 1, 28, 28)
    code, text, err = run_cli(capsys, "evaluate", run, "--iw-samples", "10", "--json", "--quiet")
    assert code == 0, err
    result = json.loads(text)
    assert np.isfinite(result["nll"]) and result["nll"] <= -result["elbo"] + 1.0
    return result


def resume_matches_whole(capsys, cut: Path, whole: Path) -> dict[str, np.ndarray]:
    """Resumes ``cut`` (a run stopped after its first epoch) to 2 epochs and checks it against
    ``whole`` (the same 2 epochs at once): the same weights bit for bit and the same losses.
    Returns the weights, by name."""
    code, out, err = run_cli(capsys, "train", "--resume", "--out", cut, "--epochs", "2")
    assert code == 0 and "resuming" in out, err
    want, got = (load_file(run / layout.WEIGHTS_FILE) for run in (whole, cut))
    assert sorted(got) == sorted(want)
    for name, array in want.items():
        np.testing.assert_array_equal(got[name], array, err_msg=name)
    assert [r["loss"] for r in read_metrics(cut)] == [r["loss"] for r in read_metrics(whole)]
    return want
