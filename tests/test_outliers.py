"""The estimator as an outlier detector: threshold_ calibrated on held-out rows,
decision_function, predict, and the threshold's persistence."""

import json

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from vaekit.api.estimator import SCORE_K, SCORE_SEED, VAE
from vaekit.data.splits import validation_split
from vaekit.errors import CheckpointError, ConfigError
from vaekit.measure.evaluation import outlier_threshold

MEAN = np.array([40.0, 5e4, -3.0, 0.5])
SCALE = np.array([10.0, 1e4, 2.0, 0.1])


def normal_rows(n: int, seed: int) -> np.ndarray:
    """Correlated 4-d Gaussian rows in raw units (an age, an income, …)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 2))
    mixing = np.array([[1.0, 0.6, 0.0, 0.3], [0.0, 0.8, 1.0, -0.5]])
    noise = 0.3 * rng.standard_normal((n, 4))
    return MEAN + SCALE * (z @ mixing + noise)


@pytest.fixture(scope="module")
def detector():
    x = normal_rows(2000, seed=0)
    vae = VAE(
        hidden=(32,),
        latent_dim=2,
        likelihood="gaussian",
        learn_sigma="per-dim",
        scale="standardize",
        val_fraction=0.5,
        contamination=0.1,
        epochs=15,
        batch_size=50,
        lr=3e-3,
        seed=4,
    )
    return vae.fit(x), x


def test_the_threshold_is_the_contamination_quantile_of_the_held_out_scores(detector):
    vae, x = detector
    _, held = validation_split(len(x), 0.5, seed=4)
    scores = vae.score_samples(x[held], k=SCORE_K, seed=SCORE_SEED)
    assert vae.threshold_ == outlier_threshold(scores, 0.1) == np.sort(scores)[99]
    assert (vae.threshold_k_, vae.threshold_seed_, vae.threshold_size_) == (100, 0, 1000)
    assert np.mean(vae.predict(x[held]) == -1) <= 0.1  # the calibration rows themselves


def test_on_new_normal_rows_the_flagged_share_is_near_the_contamination(detector):
    vae, _ = detector
    flagged = np.mean(vae.predict(normal_rows(2000, seed=1)) == -1)
    # 0.1 ± 0.04: the calibration quantile's own spread over 1,000 rows is ≈ 0.0095 (one sd)
    assert abs(flagged - 0.1) <= 0.04


def test_rows_far_from_the_data_are_outliers(detector):
    vae, x = detector
    far = x[:20] + 8 * SCALE
    assert np.all(vae.predict(far) == -1)


def test_predict_and_decision_function_agree_in_sign(detector):
    vae, x = detector
    rows = np.concatenate([normal_rows(300, seed=2), x[:30] + 5 * SCALE])
    decision, labels = vae.decision_function(rows), vae.predict(rows)
    assert labels.dtype.kind == "i" and set(np.unique(labels)) == {-1, 1}
    np.testing.assert_array_equal(labels == -1, decision < 0)
    np.testing.assert_array_equal(decision, vae.score_samples(rows) - vae.threshold_)


def test_the_threshold_survives_save_and_load(detector, tmp_path):
    vae, x = detector
    vae.save(tmp_path / "m")
    loaded = VAE.load(tmp_path / "m")
    assert loaded.threshold_ == vae.threshold_ and loaded.contamination == 0.1
    np.testing.assert_array_equal(loaded.decision_function(x[:50]), vae.decision_function(x[:50]))
    record = json.loads((tmp_path / "m" / "outliers.json").read_text())
    record["k"] = 0
    (tmp_path / "m" / "outliers.json").write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match="outliers.json is not a vaekit outlier record"):
        VAE.load(tmp_path / "m")


def test_without_held_out_rows_the_training_rows_calibrate():
    x = normal_rows(300, seed=5)
    vae = VAE(hidden=(8,), latent_dim=2, likelihood="gaussian", scale="standardize")
    vae = VAE(**{**vae.get_params(), "val_fraction": 0.0, "epochs": 1, "contamination": 0.1})
    vae.fit(x)
    assert vae.threshold_size_ == 300
    assert vae.threshold_ == outlier_threshold(vae.score_samples(x), 0.1)


def test_errors():
    with pytest.raises(NotFittedError, match="not fitted"):
        VAE().predict(np.zeros((2, 4)))
    with pytest.raises(NotFittedError, match="not fitted"):
        VAE().decision_function(np.zeros((2, 4)))
    for bad in (0, 0.6, -0.1, True, "0.1"):
        with pytest.raises(ConfigError, match=r"contamination must be a number in \(0, 0.5\]"):
            VAE(contamination=bad, epochs=1).fit(np.zeros((20, 3)))


def test_a_run_without_a_stored_threshold_says_how_to_flag(detector, tmp_path):
    from vaekit.cli import main

    run = tmp_path / "run"
    detector[0].save(run)
    argv = ["train", "--data", "mnist-small", "--epochs", "1", "--hidden", "8", "--quiet"]
    assert main([*argv, "--force", "--out", str(run)]) == 0  # replaces the whole run
    assert not (run / "outliers.json").exists()
    vae = VAE.load(run)
    with pytest.raises(ConfigError, match="no outlier threshold.*--threshold-fpr"):
        vae.predict(np.zeros((2, 1, 28, 28), dtype=np.uint8))


def test_outlier_threshold_flags_at_most_the_fraction():
    rng = np.random.default_rng(0)
    for n in (1, 7, 10, 101, 1000):
        scores = rng.normal(size=n)
        for fraction in (0.01, 0.05, 0.3, 0.5):
            level = outlier_threshold(scores, fraction)
            assert level in scores
            assert np.sum(scores < level) <= fraction * (n - 1)
    assert outlier_threshold(np.array([3.0, 1.0, 2.0, 5.0, 4.0]), 0.5) == 3.0
    with pytest.raises(ValueError, match="at least one score"):
        outlier_threshold(np.array([]), 0.1)
