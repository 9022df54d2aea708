"""vaekit.measure.quality: the Fréchet distance, precision/recall, the shipped classifier, the
CLI."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from cli_runner import run_cli, user_error
from vaekit.measure.quality import (
    confidence_entropy,
    features,
    frechet_distance,
    load_network,
    precision_recall,
    weights_path,
)

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location(
        "train_quality_classifier", ROOT / "scripts" / "train_quality_classifier.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _box_blur(images: np.ndarray, width: int) -> np.ndarray:
    """Each pixel the mean of its width × width neighbourhood (zero padding)."""
    import torch

    x = torch.nn.functional.avg_pool2d(
        torch.from_numpy(images), width, stride=1, padding=width // 2, count_include_pad=True
    )
    return x.numpy()


def test_frechet_1d_by_hand():
    a, b = np.array([[0.0], [2.0]]), np.array([[1.0], [5.0]])
    # means 1 and 3, variances (ddof 1) 2 and 8: (1-3)² + 2 + 8 − 2·sqrt(2·8) = 4 + 10 − 8
    assert frechet_distance(a, b) == pytest.approx(6.0)


def test_frechet_2d_diagonal_by_hand():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4000, 2))
    a = (a - a.mean(0)) / a.std(0, ddof=1)
    a -= a.mean(0)
    b = a * np.array([2.0, 3.0]) + np.array([1.0, -1.0])
    # Σ1 ≈ I, Σ2 = diag(4, 9): ‖μ‖² = 2, tr = 2 + 13 − 2(2 + 3) = 5 (up to sample correlation)
    assert frechet_distance(a, b) == pytest.approx(7.0, abs=0.05)


def test_frechet_gaussian_closed_form():
    rng = np.random.default_rng(1)
    s1 = np.array([[2.0, 0.5], [0.5, 1.0]])
    s2 = np.array([[1.0, -0.3], [-0.3, 0.5]])
    mu1, mu2 = np.zeros(2), np.array([1.0, 2.0])
    f1 = rng.multivariate_normal(mu1, s1, 200_000)
    f2 = rng.multivariate_normal(mu2, s2, 200_000)
    w, v = np.linalg.eigh(s1)
    root = (v * np.sqrt(w)) @ v.T
    middle = np.linalg.eigvalsh(root @ s2 @ root)
    exact = 5.0 + np.trace(s1 + s2) - 2 * np.sqrt(middle).sum()
    assert frechet_distance(f1, f2) == pytest.approx(exact, abs=0.03)


def test_frechet_symmetric_and_zero_for_identical():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((300, 5)), rng.standard_normal((200, 5)) + 0.5
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-9)
    assert abs(frechet_distance(a, a)) < 1e-9


def test_precision_recall_constructed_sets():
    rng = np.random.default_rng(3)
    real = rng.uniform(-1, 1, (500, 2))
    inside = real[:100] + 1e-4  # each one within its neighbour's radius
    assert precision_recall(real, inside, k=3)[0] == 1.0
    far = real + 100.0
    assert precision_recall(real, far, k=3) == (0.0, 0.0)
    same = precision_recall(real, real.copy(), k=3)
    assert same == (1.0, 1.0)


def test_confidence_and_entropy():
    probs = np.array([[1.0, 0.0], [0.5, 0.5]])
    confidence, entropy = confidence_entropy(probs)
    assert confidence == pytest.approx(0.75)
    assert entropy == pytest.approx(np.log(2) / 2)


def test_shipped_weights_match_the_recorded_sha256():
    recorded = _script().SHA256
    for name in ("mnist", "fashion-mnist"):
        digest = hashlib.sha256(weights_path(name).read_bytes()).hexdigest()
        assert digest == recorded[name], name


def test_recipe_is_byte_deterministic(tmp_path, mnist_small):
    script = _script()
    train, _ = mnist_small
    x, y = train.x[:256].astype(np.float32), train.y[:256]
    digests = [
        script.write(script.train(x, y, epochs=1), tmp_path / f"{i}.safetensors") for i in range(2)
    ]
    assert digests[0] == digests[1]


def test_sanity_real_near_zero_blur_and_noise_far(mnist_small):
    train, test = mnist_small
    net = load_network("mnist")
    f_train, _ = features(net, train.x[:2000])
    f_test, p_test = features(net, test.x)
    blurred = _box_blur(test.x, 5)
    noise = np.random.default_rng(4).uniform(0, 1, test.x.shape).astype(np.float32)
    f_blur, p_blur = features(net, blurred)
    f_noise, _ = features(net, noise)
    real = frechet_distance(f_train, f_test)  # measured ≈ 2; blur ≈ 306, noise ≈ 393
    assert real < 0.05 * frechet_distance(f_train, f_blur)
    assert real < 0.05 * frechet_distance(f_train, f_noise)
    assert min(precision_recall(f_train, f_test)) > 0.8 > max(precision_recall(f_train, f_blur))
    assert confidence_entropy(p_test)[0] > confidence_entropy(p_blur)[0]


@pytest.fixture(scope="module")
def one_epoch_run(tmp_path_factory):
    from vaekit.cli import main

    out = tmp_path_factory.mktemp("quality") / "run"
    argv = ["train", "--data", "mnist-small", "--epochs", "1", "--hidden", "64"]
    assert main([*argv, "--latent-dim", "4", "--quiet", "--out", str(out)]) == 0
    return out


def test_cli_quality_json(one_epoch_run, capsys):
    code, out, _ = run_cli(capsys, "quality", one_epoch_run, "-n", "500", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["n"] == 500 and result["n_real"] == 1000 and result["classifier"] == "mnist"
    assert result["fd"] > 0 and 0 <= result["precision"] <= 1 and 0 <= result["recall"] <= 1
    assert 0.1 <= result["confidence"] <= 1 and 0 <= result["entropy"] <= np.log(10)
    code, out, _ = run_cli(capsys, "quality", one_epoch_run, "-n", "500")
    assert code == 0 and "not comparable to published FID" in out
    assert f"{result['fd']:.3f}" in out  # same seed, same score


def test_the_score_ranks_a_1_epoch_model_below_a_20_epoch_one(tmp_path):
    """One run of the default model on mnist-small, scored after 1 epoch and after resuming to
    20: the longer-trained model's samples are closer to the test digits and cover more of them
    (benchmarks/quality.py measures the same on MNIST: 156.6 → 47.8)."""
    from vaekit.cli import main
    from vaekit.measure.quality import score_run

    run = tmp_path / "run"
    argv = ["train", "--data", "mnist-small", "--quiet", "--out", str(run)]
    assert main([*argv, "--epochs", "1"]) == 0
    early = score_run(run, 1000, seed=0)
    assert main([*argv, "--resume", "--epochs", "20"]) == 0
    late = score_run(run, 1000, seed=0)
    assert late["fd"] < 0.7 * early["fd"]
    assert late["recall"] > early["recall"]


def test_cli_quality_refuses_non_image_runs(tmp_path, capsys):
    data = tmp_path / "table.npy"
    np.save(data, np.random.default_rng(5).standard_normal((200, 6)).astype(np.float32))
    run = tmp_path / "run"
    code, _, _ = run_cli(
        capsys,
        "train",
        "--data",
        data,
        "--epochs",
        "1",
        "--hidden",
        "8",
        "--likelihood",
        "gaussian",
        "--latent-dim",
        "2",
        "--quiet",
        "--out",
        run,
    )
    assert code == 0
    assert "quality scores need a run on" in user_error(capsys, "quality", run, "-n", "10")
