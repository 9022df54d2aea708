"""``vaekit reconstruct``: a seeded spread of the rows it reads (one per class in turn where there
are labels), ``--seed`` and ``--index``, the rows it drew printed (with class names), and bad
indices refused in one line."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

from cli_runner import run_cli, user_error
from conftest import folder_run
from vaekit.data import classes
from vaekit.draw.gallery import spread_rows

NAMES = ("bag", "coat", "shirt")
ROWS = 60  # 3 classes of 20 images, sorted by class: rows 0-19 are class 0, …


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run of a 3-class colour folder whose class folders are named :data:`NAMES`."""
    run = folder_run(tmp_path_factory.mktemp("reconstruct"), 3, 20, names=NAMES)
    assert classes.load(run) == NAMES
    return run


def drawn(capsys, run, *flags) -> list[tuple[int, str | None]]:
    """(row, class name or None) of each row ``reconstruct`` says it drew."""
    code, out, err = run_cli(capsys, "reconstruct", run, *flags)
    assert code == 0, err
    line = next(x for x in out.splitlines() if x.startswith("drew rows "))
    found = re.findall(r"(\d+)(?: \(([^)]*)\))?", line.removeprefix("drew rows "))
    return [(int(row), name or None) for row, name in found]


def rows(capsys, run, *flags) -> list[int]:
    return [row for row, _ in drawn(capsys, run, *flags)]


@pytest.mark.parametrize("seed", ["0", "3", "12345"])
def test_the_same_seed_draws_the_same_rows(run, tmp_path, capsys, seed):
    flags = ["--split", "all", "--seed", seed, "--out", tmp_path / "r.png"]
    first = rows(capsys, run, *flags)
    assert first == rows(capsys, run, *flags) and len(first) == 8
    assert len(set(first)) == 8 and all(0 <= r < ROWS for r in first)


def test_different_seeds_draw_different_rows(run, tmp_path, capsys):
    drawn_by_seed = [
        tuple(rows(capsys, run, "--split", "all", "--seed", s, "--out", tmp_path / "r.png"))
        for s in ("0", "1", "2", "3")
    ]
    assert len(set(drawn_by_seed)) == 4


@pytest.mark.parametrize("n", [1, 3, 5, 8, 60])
def test_a_class_sorted_folder_gives_one_row_per_class_in_turn(run, tmp_path, capsys, n):
    picked = drawn(capsys, run, "--split", "all", "-n", n, "--out", tmp_path / "r.png")
    assert [name for _, name in picked] == [NAMES[i % 3] for i in range(n)]
    assert [row // 20 for row, _ in picked] == [i % 3 for i in range(n)]  # the row's class
    assert len({row for row, _ in picked}) == n


def test_the_default_is_the_held_out_rows_and_its_own_picture(run, capsys):
    picked = rows(capsys, run)
    assert len(picked) == 6 and all(0 <= r < 6 for r in picked)  # 10% of 60 held out
    assert (run / "reconstructions-n8-seed0.png").is_file()


def test_rows_without_labels_are_a_seeded_sample(run, tmp_path, capsys):
    flat = tmp_path / "flat"
    flat.mkdir()
    for i, image in enumerate(sorted((run.parent / "clothes").rglob("*.png"))):
        shutil.copy(image, flat / f"{i:03d}.png")
    flags = ["--data", flat, "--out", tmp_path / "r.png", "-n", "10"]
    picked = drawn(capsys, run, *flags)
    assert all(name is None for _, name in picked)  # no labels: no names
    rows_0 = [row for row, _ in picked]
    assert rows_0 == rows(capsys, run, *flags) and len(set(rows_0)) == 10
    assert rows_0 != rows(capsys, run, *flags, "--seed", "1")
    assert rows_0 != list(range(10))


@pytest.mark.parametrize("index", [["0"], ["59", "0", "21"], ["7", "7"]])
def test_index_draws_the_rows_asked_for(run, tmp_path, capsys, index):
    out = tmp_path / "r.png"
    picked = drawn(capsys, run, "--split", "all", "--index", *index, "--out", out)
    assert picked == [(int(i), NAMES[int(i) // 20]) for i in index]
    assert out.is_file()


def test_index_names_its_default_picture(run, capsys):
    assert rows(capsys, run, "--split", "all", "--index", "4", "40") == [4, 40]
    assert (run / "reconstructions-index4-40-seed0.png").is_file()


@pytest.mark.parametrize(
    "index, words",
    [
        (["-1"], "outside the range"),
        (["60"], "--index 60 is past the 60 inputs"),
        (["3", "1000"], "--index 1000 is past the 60 inputs"),
        (["1.5"], "not a whole number"),
        (["x"], "not a whole number"),
        (["99999999999"], "outside the range"),
        ([], "expected at least one argument"),
        ([str(i % 60) for i in range(101)], "at most 100"),
    ],
)
def test_bad_indices_are_refused_in_one_line(run, tmp_path, capsys, index, words):
    out = tmp_path / "r.png"
    line = user_error(capsys, "reconstruct", run, "--split", "all", "--index", *index, "--out", out)
    assert words in line and not out.exists()


def test_n_and_index_together_are_refused(run, tmp_path, capsys):
    line = user_error(
        capsys, "reconstruct", run, "-n", "4", "--index", "1", "--out", tmp_path / "r.png"
    )
    assert "-n or --index" in line


@pytest.mark.parametrize(
    "labels, n, classes_drawn",
    [
        ([0, 0, 1, 1, 1, 1, 1, 1], 6, [0, 1, 0, 1, 1, 1]),  # a class that runs out is skipped
        ([2, 2, 0, 0, 1], 5, [0, 1, 2, 0, 2]),  # classes in code order, whatever the rows' order
        ([1, 1, 1], 5, [1, 1, 1]),  # fewer rows than asked: all of them
        ([0, 3, 3, 0], 2, [0, 3]),  # codes missing from the data take no turn
    ],
)
def test_spread_rows_takes_the_classes_in_turn(labels, n, classes_drawn):
    labels = np.array(labels)
    for seed in range(5):
        picked = spread_rows(n, labels, len(labels), seed)
        assert labels[picked].tolist() == classes_drawn and len(set(picked.tolist())) == len(picked)


def test_spread_rows_without_labels_samples_without_repeats():
    for count, n in [(10, 3), (5, 5), (3, 8), (1000, 100)]:
        picked = spread_rows(n, None, count, seed=7)
        assert len(picked) == min(n, count) == len(set(picked.tolist()))
        assert np.array_equal(picked, spread_rows(n, None, count, seed=7))
        assert picked.min() >= 0 and picked.max() < count
