"""The four binarization protocols (scaling is tested in test_scaling.py)."""

import numpy as np
import pytest

from vaekit.config.limits import BINARIZATIONS
from vaekit.data.transforms import binarize
from vaekit.errors import ConfigError

GREY = np.linspace(0, 1, 11, dtype=np.float32)


def test_none_returns_the_input():
    assert binarize(GREY, "none") is GREY


def test_threshold():
    out = binarize(np.array([0.0, 0.5, 0.51, 1.0], dtype=np.float32), "threshold")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [0, 0, 1, 1])


@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_bernoulli_modes_sample_with_probability_x(mode):
    x = np.full((200, 100), 0.3, dtype=np.float32)
    x[:, :10] = 0
    x[:, 10:20] = 1
    out = binarize(x, mode, np.random.default_rng(0))
    assert out.dtype == np.float32
    assert set(np.unique(out)) == {0.0, 1.0}
    assert np.all(out[:, :10] == 0) and np.all(out[:, 10:20] == 1)
    assert abs(out[:, 20:].mean() - 0.3) < 0.01


def test_static_is_the_same_every_time():
    x = np.random.default_rng(5).random((50, 30), dtype=np.float32)
    first = binarize(x, "static")
    np.testing.assert_array_equal(first, binarize(x.copy(), "static"))
    assert not np.array_equal(first, binarize(x, "threshold"))


def test_dynamic_draws_fresh_samples():
    x = np.full((50, 30), 0.5, dtype=np.float32)
    rng = np.random.default_rng(0)
    assert not np.array_equal(binarize(x, "dynamic", rng), binarize(x, "dynamic", rng))
    np.testing.assert_array_equal(
        binarize(x, "dynamic", np.random.default_rng(3)),
        binarize(x, "dynamic", np.random.default_rng(3)),
    )


def test_dynamic_needs_a_generator():
    with pytest.raises(ValueError, match="rng"):
        binarize(GREY, "dynamic")


def test_unknown_mode_is_a_config_error_listing_modes():
    with pytest.raises(ConfigError, match="none, threshold, static, dynamic"):
        binarize(GREY, "stochastic")
    assert BINARIZATIONS == ("none", "threshold", "static", "dynamic")
