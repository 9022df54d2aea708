"""A run's CPU threads: a setting with a default, kept in the run, used again on resume (so the
resumed steps add their products' partial sums in the same order), applied to torch, to
NumPy's BLAS and to OpenMP, and given back afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from tests.cli_runner import resume_matches_whole, run_cli, user_error
from threadpoolctl import threadpool_info

from vaekit.config.settings import TrainConfig
from vaekit.engines import threads
from vaekit.runs import config_file

SMALL = ("--hidden", "24", "--latent-dim", "3", "--batch-size", "100", "--quiet")


def library_threads() -> list[tuple[str, int]]:
    """(library, threads) of every BLAS and OpenMP library loaded: NumPy's and SciPy's BLAS,
    torch's OpenMP and scikit-learn's own (imported for the purpose)."""
    import sklearn.ensemble  # noqa: F401 (loads scikit-learn's OpenMP library)

    pools = threadpool_info()
    assert len([pool for pool in pools if pool["user_api"] == "openmp"]) >= 2
    return [(pool["filepath"], pool["num_threads"]) for pool in pools]


@pytest.mark.parametrize("count", [1, 2, 3])
def test_cpu_threads_sets_torch_blas_and_openmp_within_and_restores_after(count):
    torch_before, libraries_before = torch.get_num_threads(), library_threads()
    with threads.cpu_threads(count):
        assert torch.get_num_threads() == count
        assert {n for _, n in library_threads()} == {count}
    assert (torch.get_num_threads(), library_threads()) == (torch_before, libraries_before)


def test_none_leaves_the_libraries_defaults():
    before = (torch.get_num_threads(), library_threads())
    with threads.cpu_threads(None):
        assert (torch.get_num_threads(), library_threads()) == before


def test_the_default_is_one_thread_and_a_bad_count_is_one_line(capsys, tmp_path):
    assert TrainConfig().threads == 1 and TrainConfig(threads=None).threads is None
    for bad in ("0", "-1", "two", "1.5", "2000"):
        line = user_error(capsys, "train", "--data", "mnist-small", "--threads", bad,
                          "--out", tmp_path / "r")  # fmt: skip
        assert "threads" in line, line
    assert not (tmp_path / "r").exists()


def _counts_used(monkeypatch) -> list:
    """The counts each ``fit`` of this process asks for, recorded as the loop applies them."""
    used, original = [], threads.cpu_threads

    def spy(count):
        used.append(count)
        return original(count)

    monkeypatch.setattr("vaekit.train.loop.cpu_threads", spy)
    return used


def test_the_run_keeps_its_count_and_a_resume_uses_it_bit_exactly(capsys, tmp_path, monkeypatch):
    """Two threads, 2 epochs at once against 1 + a resumed 1: the same weights and losses, and
    the resume trains with the run's 2 threads though its default is 1."""
    used = _counts_used(monkeypatch)
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    for out, epochs in ((whole, "2"), (cut, "1")):
        code, _, err = run_cli(capsys, "train", "--data", "mnist-small", "--out", out,
                               "--epochs", epochs, "--threads", "2", *SMALL)  # fmt: skip
        assert code == 0, err
    assert json.loads((cut / "config.json").read_text())["train"]["threads"] == 2
    resume_matches_whole(capsys, cut, whole)
    assert used == [2, 2, 2]


def test_a_run_from_before_the_setting_resumes_with_one_thread_per_core(
    capsys, tmp_path, monkeypatch
):
    run = tmp_path / "old"
    code, _, err = run_cli(capsys, "train", "--data", "mnist-small", "--out", run,
                           "--epochs", "1", *SMALL)  # fmt: skip
    assert code == 0, err
    record = json.loads((run / "config.json").read_text())
    del record["train"]["threads"]
    (run / "config.json").write_text(json.dumps(record))
    assert config_file.read_config(run)[1].threads is None
    used = _counts_used(monkeypatch)
    code, _, err = run_cli(capsys, "train", "--resume", "--out", run, "--epochs", "2")
    assert code == 0 and used == [None], err


@pytest.mark.parametrize("engine", ["torch", "numpy"])
def test_the_estimator_trains_with_its_count_and_gives_the_callers_back(engine, monkeypatch):
    pytest.importorskip("sklearn")
    from vaekit import VAE

    used = _counts_used(monkeypatch)
    before = (torch.get_num_threads(), library_threads())
    x = (np.random.default_rng(0).random((60, 12)) > 0.5).astype(np.float32)
    VAE(hidden=(8,), latent_dim=2, epochs=1, engine=engine, threads=2).fit(x)
    assert used == [2]
    assert (torch.get_num_threads(), library_threads()) == before


@pytest.mark.parametrize("given", [None, "ACTIVE"])
def test_the_command_line_lets_waiting_threads_sleep_unless_told_otherwise(given):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given:
        env["OMP_WAIT_POLICY"] = given
    code = "import os; from vaekit.cli import main; main(['presets']); " + (
        "print(os.environ['OMP_WAIT_POLICY'])"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.split()[-1] == (given or "PASSIVE"), out.stderr


def test_the_demo_takes_a_count_too(capsys, tmp_path):
    out = tmp_path / "demo"
    code, _, err = run_cli(
        capsys, "demo", "--out", out, "--epochs", "1", "--threads", "2", "--quiet"
    )
    assert code == 0, err
    assert json.loads((out / "config.json").read_text())["train"]["threads"] == 2
    assert "threads" in user_error(capsys, "demo", "--out", tmp_path / "d0", "--threads", "0")


def test_evaluate_and_score_take_a_count_that_changes_no_number(capsys, tmp_path):
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--data", "mnist-small", "--epochs", "1", *SMALL,
                           "--out", run)  # fmt: skip
    assert code == 0, err
    records, scores = [], []
    for count in ("1", "2", "3"):
        code, out, err = run_cli(capsys, "evaluate", run, "--iw-samples", "50", "--json",
                                 "--quiet", "--threads", count)  # fmt: skip
        assert code == 0, err
        records.append(json.loads(out))
        csv = tmp_path / f"scores-{count}.csv"
        code, _, err = run_cli(capsys, "score", run, "mnist-small", "--iw-samples", "20",
                               "--quiet", "--threads", count, "--out", csv)  # fmt: skip
        assert code == 0, err
        scores.append(csv.read_text())
    assert records[0]["nll"] == records[1]["nll"] == records[2]["nll"]
    assert scores[0] == scores[1] == scores[2]
    for bad in ("0", "-1", "two", "2000"):
        for command in (("evaluate", run, "--iw-samples", "5"), ("score", run, "mnist-small")):
            line = user_error(capsys, *command, "--threads", bad)
            assert "threads" in line, line
