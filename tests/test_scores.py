"""One input, one log p(x): ``vaekit score``, ``vaekit evaluate``, ``VAE.score_samples`` and the
explorer give an image the same importance-weighted estimate at the same k and seed, whatever
else they score with it; and ``vaekit score`` writes any input name into its CSV losslessly."""

from __future__ import annotations

import csv
import io
import json
import os
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_runner import run_cli
from vaekit.api.estimator import VAE
from vaekit.cli import main
from vaekit.cli.scores import csv_name
from vaekit.data import load_dataset
from vaekit.measure.evaluation import iwae_log_likelihood
from vaekit.serve.explorer import Explorer

K = 20


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("scores") / "run"
    argv = ["train", "--data", "mnist-small", "--epochs", "1", "--hidden", "32"]
    argv += ["--latent-dim", "4", "--engine", "numpy", "--quiet", "--out", str(out)]
    assert main(argv) == 0
    return out


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> tuple[np.ndarray, list[Path]]:
    """Three test digits as 8-bit levels (3, 1, 28, 28) and as PNG files."""
    folder = tmp_path_factory.mktemp("digits")
    levels = np.round(load_dataset("mnist-small", "test").x[:3] * 255).astype(np.uint8)
    paths = []
    for i, image in enumerate(levels):
        paths.append(folder / f"digit-{i}.png")
        Image.fromarray(image[0]).save(paths[-1])
    return levels, paths


def _score_csv(capsys, run: Path, *inputs, k: int = K) -> list[dict]:
    code, out, err = run_cli(capsys, "score", run, *inputs, "--iw-samples", k, "--quiet")
    assert code == 0, err
    return list(csv.DictReader(io.StringIO(out)))


def test_every_path_gives_an_image_the_same_log_px(run, digits, capsys):
    levels, paths = digits
    alone = [float(_score_csv(capsys, run, path)[0]["log_px"]) for path in paths]
    together = [float(row["log_px"]) for row in _score_csv(capsys, run, *paths)]
    estimator = VAE.load(run)
    scored = estimator.score_samples(levels, k=K)
    one_by_one = [estimator.score_samples(levels[i : i + 1], k=K)[0] for i in range(3)]
    explorer = Explorer(estimator.engine_, None, None, score_samples=K, scaling=estimator.scaling_)
    uploads = [explorer.analyse(explorer.image_from_upload(p.read_bytes())) for p in paths]
    np.testing.assert_allclose(together, alone, atol=1e-4)  # the CSV rounds to 4 decimals
    np.testing.assert_allclose(scored, alone, atol=1e-4)
    np.testing.assert_allclose(one_by_one, scored, rtol=1e-6)
    np.testing.assert_allclose([u.log_likelihood for u in uploads], scored, rtol=1e-6)
    np.testing.assert_allclose(  # evaluate's NLL is the mean of the same per-input estimates
        iwae_log_likelihood(estimator.engine_, levels / np.float32(255), K), scored, rtol=1e-6
    )


def test_a_row_scores_the_same_at_any_position_in_any_batch(run, digits):
    engine = VAE.load(run).engine_
    x = load_dataset("mnist-small", "test").x[:40]
    whole = iwae_log_likelihood(engine, x, K, batch_size=500)
    for batch_size in (1, 3, 7):
        np.testing.assert_allclose(
            iwae_log_likelihood(engine, x, K, batch_size=batch_size), whole, rtol=1e-6
        )
    shuffled = np.random.default_rng(0).permutation(40)
    np.testing.assert_allclose(
        iwae_log_likelihood(engine, x[shuffled], K), whole[shuffled], rtol=1e-6
    )
    # a large k scores the same rows in smaller batches; each row still draws its own noise
    np.testing.assert_allclose(
        iwae_log_likelihood(engine, x[:4], 5000)[:2],
        iwae_log_likelihood(engine, x[:2], 5000),
        rtol=1e-6,
    )


NAMES = [
    "plain.png",
    "comma, in the name.png",
    'a "quoted" name.png',
    "line\nbreak.png",
    "per%cent.png",
    "naïve ünïcode.png",
    os.fsdecode(b"not-utf8-\xff\xfe.png"),
]


@pytest.mark.parametrize("name", NAMES, ids=range(len(NAMES)))
def test_any_input_name_reads_back_from_the_csv(run, digits, tmp_path, capsys, name):
    """A comma, a quote or a line break in a name shifts no column and forges no row; a name
    that is not UTF-8 is percent-encoded and decodes back to the very bytes."""
    path = tmp_path / name
    path.write_bytes(digits[1][0].read_bytes())
    out = tmp_path / "scores.csv"
    code, _, err = run_cli(capsys, "score", run, path, "--iw-samples", "2", "--out", out)
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"), newline="")))
    assert len(rows) == 1 and list(rows[0]) == ["input", "index", "label", "log_px"]
    back = os.fsdecode(urllib.parse.unquote_to_bytes(rows[0]["input"]))
    assert back == str(path)
    assert rows[0]["input"] == csv_name(str(path))


def test_score_with_a_threshold_writes_its_columns_for_every_row(run, digits, capsys):
    rows = _score_csv(capsys, run, *digits[1], "--threshold-fpr", "0.1", k=2)
    assert [list(row) for row in rows] == [
        ["input", "index", "label", "log_px", "threshold", "anomaly"]
    ] * 3
    assert {row["threshold"] for row in rows} == {rows[0]["threshold"]}
    assert all(row["anomaly"] in ("0", "1") for row in rows)


def test_one_input_is_counted_in_the_singular(run, digits, capsys):
    code, out, err = run_cli(capsys, "evaluate", run, "--data", digits[1][0])
    assert code == 0, err
    assert "(1 example)" in out and "1 examples" not in out
    code, out, err = run_cli(
        capsys, "encode", run, "--data", digits[1][0], "--out", digits[1][0].with_suffix(".npy")
    )
    assert code == 0 and "1 example (4 dimensions)" in out, (out, err)
    result = json.loads(run_cli(capsys, "evaluate", run, "--data", digits[1][0], "--json")[1])
    assert result["n"] == 1
