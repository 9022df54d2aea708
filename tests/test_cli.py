"""The command line end to end, in a temporary directory, including every error path."""

import json
import subprocess
import sys

import numpy as np
import pytest

from vaekit import disk
from vaekit.cli import main
from vaekit.draw.gallery import RUN_FIGURES
from vaekit.runs import config_file, layout

SMALL = ["--hidden", "32", "--latent-dim", "4", "--batch-size", "250"]


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(capsys, *argv, words):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vaekit: error: "), err
    assert "Traceback" not in err
    assert words in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def trained_run(tmp_path_factory):
    """A one-epoch mnist-small run made through the CLI (shared by the tests below)."""
    out = tmp_path_factory.mktemp("cli") / "run"
    assert (
        main(
            [
                "train",
                "--data",
                "mnist-small",
                "--out",
                str(out),
                "--epochs",
                "1",
                "--quiet",
                *SMALL,
            ]
        )
        == 0
    )
    return out


def test_demo_writes_pictures_and_checkpoint_and_prints_test_elbo(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli(capsys, "demo", "--epochs", "2")
    assert code == 0
    assert "test -ELBO after 2 epochs" in out and "nats per example" in out
    run = tmp_path / "runs" / "demo"
    assert sorted(p.name for p in run.glob("*.png")) == sorted(RUN_FIGURES)  # as --help says
    assert (run / "model.safetensors").is_file() and (run / "config.json").is_file()
    # a second demo replaces the first demo run; a foreign run in --out is protected
    assert run_cli(capsys, "demo", "--epochs", "1")[0] == 0
    other = tmp_path / "mine"
    assert (
        main(
            [
                "train",
                "--data",
                "mnist-small",
                "--out",
                str(other),
                "--epochs",
                "1",
                "--quiet",
                *SMALL,
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert_user_error(capsys, "demo", "--out", str(other), words="demo did not make")


def test_train_sample_reconstruct(trained_run, tmp_path, capsys):
    metrics = [json.loads(x) for x in (trained_run / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 1 and metrics[0]["test_loss"] > 0
    code, out, _ = run_cli(
        capsys,
        "sample",
        str(trained_run),
        "-n",
        "16",
        "--seed",
        "3",
        "--out",
        str(tmp_path / "s.png"),
        "--npy",
        str(tmp_path / "s.npy"),
    )
    assert code == 0 and (tmp_path / "s.png").is_file()
    samples = np.load(tmp_path / "s.npy")
    assert samples.shape == (16, 1, 28, 28) and samples.dtype == np.float32
    assert run_cli(capsys, "sample", str(trained_run), "-n", "4")[0] == 0
    assert (trained_run / "samples-n4-seed0.png").is_file()
    code, out, _ = run_cli(
        capsys,
        "reconstruct",
        str(trained_run),
        "--data",
        "mnist-small",
        "-n",
        "6",
        "--out",
        str(tmp_path / "r.png"),
    )
    assert code == 0 and (tmp_path / "r.png").is_file()


def test_sample_is_deterministic(trained_run, tmp_path, capsys):
    for name in ("a", "b"):
        run_cli(
            capsys, "sample", str(trained_run), "-n", "4", "--npy", str(tmp_path / f"{name}.npy")
        )
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))


def test_train_resume_continues(trained_run, capsys):
    code, out, _ = run_cli(capsys, "train", "--resume", "--out", str(trained_run), "--epochs", "2")
    assert code == 0 and "resuming" in out and "epoch 2/2" in out
    assert len((trained_run / "metrics.jsonl").read_text().splitlines()) == 2


def test_user_data_file(tmp_path, capsys, rng):
    x = rng.integers(0, 256, size=(300, 8, 8), dtype=np.uint8)
    np.save(tmp_path / "tiny.npy", x)
    code, out, _ = run_cli(
        capsys,
        "train",
        "--data",
        str(tmp_path / "tiny.npy"),
        "--out",
        str(tmp_path / "run"),
        "--epochs",
        "2",
        "--hidden",
        "16",
        "--latent-dim",
        "2",
        "--quiet",
    )
    assert code == 0 and "validation -ELBO after 2 epochs" in out  # 10% held out by default
    assert "270 examples, 30 held out (validation)" in out
    assert (tmp_path / "run" / "samples.png").is_file()


def test_datasets_lists_the_named_sets(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "datasets", "--data-dir", str(tmp_path), "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert set(rows) == {"mnist", "fashion-mnist", "mnist-small", "shapes", "shapes-small"}
    assert rows["mnist-small"]["present"] is True
    # the generated sets are present once cached; listing them generates nothing
    assert rows["shapes"]["present"] is False and not any(tmp_path.iterdir())
    assert run_cli(capsys, "datasets")[0] == 0


@pytest.mark.parametrize(
    "argv, words",
    [
        (["train", "--data", "no-such-set", "--out", "x"], "no-such-set"),
        (["train", "--out", "x"], "--data"),
        (["train", "--data", "mnist-small", "--latent-dim", "0", "--out", "x"], "--latent-dim"),
        (["train", "--data", "mnist-small", "--epochs", "ten"], "neither a whole number"),
        (["train", "--data", "mnist-small", "--activation", "swish"], "invalid choice"),
        (["train", "--bogus"], "unrecognized"),
        (["train", "--resume"], "--out"),
        (["frobnicate"], "invalid choice"),
        (["sample", "nowhere"], "does not exist"),
        (["sample", "."], "config.json"),
        (["reconstruct", "."], "config.json"),  # --data defaults to the run's own
    ],
)
def test_errors_are_one_line_and_exit_2(tmp_path, capsys, monkeypatch, argv, words):
    monkeypatch.chdir(tmp_path)
    assert_user_error(capsys, *argv, words=words)
    assert not (tmp_path / "x").exists()


def test_errors_against_a_run(trained_run, capsys, tmp_path):
    before = {p.name: p.read_bytes() for p in trained_run.iterdir() if p.is_file()}
    assert_user_error(
        capsys, "train", "--data", "mnist-small", "--out", str(trained_run), words="not empty"
    )
    assert_user_error(
        capsys, "train", "--resume", "--out", str(trained_run), "--lr", "0.1", words="--lr"
    )
    assert_user_error(capsys, "sample", str(trained_run), "-n", "0", words="-n")
    np.save(tmp_path / "wrong.npy", np.zeros((3, 5, 5), np.uint8))
    assert_user_error(
        capsys,
        "reconstruct",
        str(trained_run),
        "--data",
        str(tmp_path / "wrong.npy"),
        "--split",
        "train",
        words="shape",
    )
    assert_user_error(
        capsys,
        "sample",
        str(trained_run),
        "--out",
        str(tmp_path / "no" / "dir" / "s.png"),
        words="does not exist",
    )
    after = {p.name: p.read_bytes() for p in trained_run.iterdir() if p.is_file()}
    assert after == before  # nothing overwritten or lost


def test_console_entry_point_runs_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "vaekit", "sample", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        timeout=600,  # a deadlock guard
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("vaekit: error:") and "Traceback" not in proc.stderr
    help_text = subprocess.run(
        [sys.executable, "-m", "vaekit", "train", "--help"],
        capture_output=True,
        text=True,
        timeout=600,  # a deadlock guard
    )
    assert help_text.returncode == 0 and "--latent-dim" in help_text.stdout


def test_evaluate_table_and_json(trained_run, capsys):
    code, out, _ = run_cli(capsys, "evaluate", str(trained_run), "--data", "mnist-small")
    assert code == 0 and "ELBO" in out and "active units" in out and "NLL" not in out
    code, out, _ = run_cli(
        capsys,
        "evaluate",
        str(trained_run),
        "--data",
        "mnist-small",
        "--iw-samples",
        "20",
        "--json",
    )
    result = json.loads(out)
    assert set(result) >= {"elbo", "recon", "kl", "nll", "active_units", "n", "protocol"}
    assert result["n"] == 1000 and result["elbo"] == pytest.approx(-result["recon"] - result["kl"])
    assert result["nll"] < -result["elbo"]  # the IWAE bound is tighter than the ELBO
    assert result["protocol"] == {
        "data": "mnist-small",
        "split": "test",
        "binarize": "none",
        "iw_samples": 20,
        "seed": 0,
        "engine": "torch",
    }
    assert 0 <= result["active_units"] <= 4 and len(result["kl_per_dim"]) == 4


def test_score_writes_csv_and_separates_digits_from_noise(trained_run, capsys, tmp_path, rng):
    noise = rng.integers(0, 256, size=(20, 28, 28), dtype=np.uint8)
    np.save(tmp_path / "noise.npy", noise)
    out = tmp_path / "scores.csv"
    code, text, _ = run_cli(
        capsys,
        "score",
        str(trained_run),
        "mnist-small",
        str(tmp_path / "noise.npy"),
        "--iw-samples",
        "10",
        "--out",
        str(out),
    )
    assert code == 0 and "median" in text
    rows = out.read_text().splitlines()
    assert rows[0] == "input,index,label,log_px" and len(rows) == 1 + 1000 + 20
    digits = [float(r.split(",")[3]) for r in rows[1:1001]]
    noisy = [float(r.split(",")[3]) for r in rows[1001:]]
    assert rows[1].split(",")[2] != "" and rows[-1].split(",")[2] == ""
    assert np.median(digits) > max(noisy)
    code, text, _ = run_cli(
        capsys, "score", str(trained_run), str(tmp_path / "noise.npy"), "--iw-samples", "2"
    )
    assert code == 0 and text.count("\n") == 21  # CSV on standard output


def test_score_a_single_png(trained_run, capsys, tmp_path, mnist_small):
    from PIL import Image

    Image.fromarray((mnist_small[1].x[0, 0] * 255).astype(np.uint8)).save(tmp_path / "d.png")
    code, text, _ = run_cli(capsys, "score", str(trained_run), str(tmp_path / "d.png"))
    assert code == 0 and len(text.splitlines()) == 2


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".csv"])
def test_encode_exports_latents(trained_run, capsys, tmp_path, suffix):
    out = tmp_path / f"latents{suffix}"
    code, _, _ = run_cli(
        capsys, "encode", str(trained_run), "--data", "mnist-small", "--out", str(out)
    )
    assert code == 0
    if suffix == ".npy":
        assert np.load(out).shape == (1000, 4)
    elif suffix == ".npz":
        with np.load(out) as z:
            assert z["mu"].shape == z["logvar"].shape == (1000, 4) and z["y"].shape == (1000,)
    else:
        lines = out.read_text().splitlines()
        assert lines[0].split(",")[-1] == "label" and len(lines[0].split(",")) == 9
        assert len(lines) == 1001


def test_figure_commands(trained_run, capsys, tmp_path):
    for argv in (
        ["manifold", str(trained_run), "--dims", "0", "3", "-n", "8"],
        ["manifold", str(trained_run), "--data", "mnist-small", "-n", "8"],
        ["scatter", str(trained_run), "--data", "mnist-small", "--max-points", "500"],
        [
            "interpolate",
            str(trained_run),
            "--data",
            "mnist-small",
            "--pairs",
            "2",
            "--method",
            "slerp",
        ],
        ["curves", str(trained_run)],
    ):
        out = tmp_path / (argv[0] + str(len(argv)) + ".png")
        code, text, _ = run_cli(capsys, *argv, "--out", str(out))
        assert code == 0 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", argv


def test_figure_and_evaluation_errors(trained_run, capsys, tmp_path):
    assert_user_error(
        capsys,
        "interpolate",
        str(trained_run),
        "--data",
        "mnist-small",
        "--pairs",
        "0",
        words="--pairs",
    )
    assert_user_error(
        capsys,
        "evaluate",
        str(trained_run),
        "--data",
        "mnist-small",
        "--iw-samples",
        "0",
        words="--iw-samples",
    )
    assert_user_error(
        capsys,
        "encode",
        str(trained_run),
        "--data",
        "mnist-small",
        "--out",
        str(tmp_path / "z.txt"),
        words=".npy",
    )
    assert_user_error(
        capsys, "score", str(trained_run), str(tmp_path / "missing.npy"), words="missing.npy"
    )
    empty = tmp_path / "empty-run"
    empty.mkdir()
    assert_user_error(capsys, "curves", str(empty), words="config.json")


# --- messages that are true ---------------------------------------------------------------------


def test_a_missing_output_folder_is_refused_before_any_work(trained_run, capsys, tmp_path):
    folder = tmp_path / "missing"
    for argv in (
        ["sample", str(trained_run), "--out", str(folder / "x.png")],
        ["sample", str(trained_run), "--npy", str(folder / "x.npy")],
        ["curves", str(trained_run), "--out", str(folder / "x.jpg")],
        ["score", str(trained_run), "mnist-small", "--out", str(folder / "s.csv")],
    ):
        code, out, err = run_cli(capsys, *argv)
        assert code == 2 and out == "", argv
        assert err.count("\n") == 1 and f"the folder {folder} does not exist" in err, err
    assert not folder.exists()


@pytest.mark.parametrize(
    "name, magic",
    [("x.png", b"\x89PNG\r\n\x1a\n"), ("x.jpg", b"\xff\xd8\xff"), ("x.JPEG", b"\xff\xd8\xff")],
)
def test_pictures_are_written_in_the_format_their_suffix_names(
    trained_run, capsys, tmp_path, name, magic
):
    for argv in (["sample", str(trained_run), "-n", "4"], ["curves", str(trained_run)]):
        out = tmp_path / argv[0] / name
        out.parent.mkdir()
        assert run_cli(capsys, *argv, "--out", str(out))[0] == 0
        assert out.read_bytes()[: len(magic)] == magic, argv


def test_an_unsupported_picture_suffix_is_refused_before_any_work(capsys, tmp_path):
    # the run does not even exist: the suffix is checked first, and nothing is created
    for command in ("sample", "reconstruct", "manifold", "scatter", "interpolate", "curves"):
        out = tmp_path / f"{command}.gif"
        line = assert_user_error(
            capsys, command, str(tmp_path / "no-run"), "--out", str(out), words=".png, .jpg"
        )
        assert "no-run" not in line
        assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_a_refused_train_does_not_announce_training(trained_run, capsys, tmp_path):
    assert_user_error(
        capsys, "train", "--data", "mnist-small", "--out", str(trained_run), words="not empty"
    )
    np.save(tmp_path / "big.npy", np.full((20, 4), -1.0, np.float32))  # outside [0, 1]
    code, out, err = run_cli(
        capsys, "train", "--data", str(tmp_path / "big.npy"), "--out", str(tmp_path / "r")
    )
    assert code == 2 and "outside [0, 1]" in err
    assert out == "" and not (tmp_path / "r").exists()


def test_demo_into_a_foreign_run_says_what_demo_can_do(trained_run, capsys, tmp_path):
    before = {p.name: p.read_bytes() for p in trained_run.iterdir() if p.is_file()}
    line = assert_user_error(capsys, "demo", "--out", str(trained_run), words="--force")
    assert "--resume" not in line and "another --out" in line
    assert {p.name: p.read_bytes() for p in trained_run.iterdir() if p.is_file()} == before
    (tmp_path / "notes.txt").write_text("mine")
    line = assert_user_error(capsys, "demo", "--out", str(tmp_path), words="holds no run")
    assert "--resume" not in line and "--force" not in line
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_demo_into_a_folder_left_by_a_killed_demo_starts_again(tmp_path, capsys):
    """A demo killed after taking its lock, before any file of the run was whole, leaves the
    lock and temporaries: the folder counts as empty for demo, as it does for train."""
    out = tmp_path / "demo"
    out.mkdir()
    (out / layout.LOCK_FILE).write_text("")
    (out / (layout.CONFIG_FILE + disk.TMP_SUFFIX)).write_text("{")
    code, _, err = run_cli(capsys, "demo", "--out", str(out), "--epochs", "1", "--quiet")
    assert code == 0, err
    assert config_file.read_config(out)[2]["created_by"] == "demo"


def test_one_epoch_is_singular(tmp_path, capsys):
    from PIL import Image

    code, out, _ = run_cli(
        capsys,
        "train",
        "--data",
        "mnist-small",
        "--out",
        str(tmp_path / "r"),
        "--epochs",
        "1",
        *SMALL,
    )
    assert code == 0 and "after 1 epoch:" in out and "1 epochs" not in out
    with Image.open(tmp_path / "r" / "curves.png") as image:
        assert "1 epoch," in image.info["Title"]


def test_tsne_without_scikit_learn_names_the_flags(trained_run, capsys, without_sklearn):
    line = assert_user_error(
        capsys,
        "scatter",
        str(trained_run),
        "--data",
        "mnist-small",
        "--method",
        "tsne",
        words="--method tsne needs scikit-learn",
    )
    assert "--method pca" in line and "method=" not in line


def test_demo_help_lists_every_picture_the_demo_writes(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in RUN_FIGURES:
        assert name in text


def test_training_figures_name_their_epoch_and_step(tmp_path, capsys):
    from PIL import Image

    run = tmp_path / "r"
    argv = ["train", "--data", "mnist-small", "--out", str(run), "--epochs", "2", "--quiet"]
    assert run_cli(capsys, *argv, *SMALL, "--sample-every-steps", "15")[0] == 0
    figures_dir = run / "figures"

    def title(name: str) -> str:
        with Image.open(figures_dir / name) as image:
            return image.info["Title"]

    assert "at epoch 2 (seed 0)" in title("samples-epoch-002.png")
    assert title("reconstructions-epoch-001.png").endswith("at epoch 1")
    # 20 steps per epoch: step 15 falls in epoch 1, step 30 in epoch 2
    assert "at epoch 1, step 15 " in title("samples-step-0000015.png")
    assert "at epoch 2, step 30 " in title("samples-step-0000030.png")


# --- progress: on stderr, a bar on a terminal, plain lines otherwise, nothing with --quiet --------


def run_with_terminal_stderr(argv, cwd) -> tuple[int, str, str]:
    """Run ``python -m vaekit ARGV`` with stderr on a pseudo-terminal and stdout on a file;
    returns (exit code, stdout, what the terminal received)."""
    import fcntl
    import os
    import pty
    import select
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 24×100 chars
    stdout_path = cwd / "stdout.txt"
    with open(stdout_path, "wb") as stdout:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vaekit", *argv], cwd=cwd, stdout=stdout, stderr=slave
        )
    os.close(slave)
    received = b""
    try:
        while True:  # until the process exits and the terminal closes (EIO)
            ready, _, _ = select.select([master], [], [], 600)  # a deadlock guard only
            assert ready, "no output from the terminal in 600 s"
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            received += chunk
    finally:
        os.close(master)
    code = proc.wait(timeout=600)
    return code, stdout_path.read_text(), received.decode(errors="replace")


def test_evaluate_and_score_show_bars_on_a_terminal_and_keep_stdout_clean(trained_run, tmp_path):
    argv = ["evaluate", str(trained_run), "--data", "mnist-small", "--iw-samples", "3", "--json"]
    code, out, terminal = run_with_terminal_stderr(argv, tmp_path)
    assert code == 0, terminal
    assert json.loads(out)["n"] == 1000  # stdout holds the result alone
    for part in ("ELBO", "active units", "IWAE bound, k=3"):
        assert f"{part}:   0%|" in terminal, terminal  # the bar, drawn as each part starts
        assert "/1000" in terminal
    assert "1,000 examples" not in terminal  # no plain lines on a terminal
    code, out, terminal = run_with_terminal_stderr(
        ["score", str(trained_run), "mnist-small", "--iw-samples", "2"], tmp_path
    )
    assert code == 0 and out.startswith("input,index,label,log_px\n")
    assert len(out.splitlines()) == 1001 and "scoring mnist-small, k=2:   0%|" in terminal
    code, out, terminal = run_with_terminal_stderr([*argv, "--quiet"], tmp_path)
    assert code == 0 and json.loads(out)["n"] == 1000 and terminal.strip() == ""


def test_evaluate_and_score_print_a_plain_line_per_part_without_a_terminal(trained_run, capsys):
    code, out, err = run_cli(
        capsys,
        "evaluate",
        str(trained_run),
        "--data",
        "mnist-small",
        "--iw-samples",
        "2",
        "--json",
    )
    assert code == 0 and json.loads(out)["n"] == 1000
    assert err.splitlines() == [
        "ELBO: 1,000 examples",
        "active units: 1,000 examples",
        "IWAE bound, k=2: 1,000 examples",
    ]
    code, out, err = run_cli(
        capsys, "score", str(trained_run), "mnist-small", "mnist-small", "--iw-samples", "1"
    )
    assert code == 0 and len(out.splitlines()) == 2001
    assert err.splitlines() == ["scoring mnist-small, k=1: 1,000 examples"] * 2
    code, out, err = run_cli(
        capsys, "score", str(trained_run), "mnist-small", "--iw-samples", "1", "--quiet"
    )
    assert code == 0 and err == ""


def test_training_without_a_terminal_reports_inside_long_epochs(tmp_path, capsys):
    argv = ["train", "--data", "mnist-small", "--out", str(tmp_path / "r"), "--epochs", "1"]
    small = ["--hidden", "8", "--latent-dim", "2", "--batch-size", "25"]  # 200 steps an epoch
    code, out, err = run_cli(capsys, *argv, *small)
    assert code == 0 and "epoch 1/1  loss" in out
    lines = [line for line in err.splitlines() if line.startswith("epoch 1/1: step")]
    assert [line.split()[3] for line in lines] == [f"{20 * i}/200" for i in range(1, 10)]
    code, out, err = run_cli(capsys, *argv, *small, "--force", "--quiet")
    assert code == 0 and err == ""


def test_readers_never_write_over_a_runs_files(trained_run, capsys):
    """Every command that draws from a run writes, without --out, a new file named after its
    settings beside the run's files, never over one of them (train's figures included)."""
    import hashlib

    def files() -> dict[str, str]:
        return {
            str(p.relative_to(trained_run)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in trained_run.rglob("*")
            if p.is_file()
        }

    before = files()
    assert {"manifold.png", "scatter.png", "curves.png", "samples.png"} <= set(before)
    commands = [
        ["sample", "-n", "4"],
        ["sample", "-n", "64"],
        ["reconstruct"],
        ["manifold"],
        ["manifold", "--dims", "1", "0"],
        ["traverse"],
        ["traverse", "--dims", "0", "--index", "3"],
        ["scatter", "--quiet"],
        ["scatter", "--method", "pca", "--quiet"],
        ["interpolate"],
        ["curves"],
    ]
    written = []
    for command in commands:
        code, out, err = run_cli(capsys, command[0], str(trained_run), *command[1:])
        assert code == 0, (command, err)
        written.append(out.split("wrote ")[1].split()[0])
    after = files()
    assert {name: after[name] for name in before} == before, "a reader changed a run's file"
    new = set(after) - set(before)
    assert {path.rsplit("/", 1)[1] for path in written} == new and len(new) == len(commands)
    assert not new & set(layout.RUN_ENTRIES)
