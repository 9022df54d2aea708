"""Scaling to [0, 1] and the four binarization protocols."""

import numpy as np
import pytest

from vaekit.config import BINARIZATIONS
from vaekit.data.transforms import binarize, to_unit_range
from vaekit.errors import ConfigError, DataError


def test_uint8_is_divided_by_255():
    out = to_unit_range(np.array([[0, 51, 255]], dtype=np.uint8), "s")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.array([[0, 0.2, 1]], dtype=np.float32))


def test_uint8_is_divided_even_when_dark():
    np.testing.assert_array_equal(
        to_unit_range(np.array([0, 1], dtype=np.uint8), "s"),
        np.array([0, 1 / 255], dtype=np.float32),
    )


@pytest.mark.parametrize("dtype", [np.int64, np.float64, np.float32, np.uint16])
def test_values_up_to_255_are_divided(dtype):
    out = to_unit_range(np.array([0, 2, 255], dtype=dtype), "s")
    np.testing.assert_allclose(out, [0, 2 / 255, 1])
    assert out.dtype == np.float32


@pytest.mark.parametrize("dtype", [np.int64, np.float64, bool])
def test_values_in_unit_range_are_kept(dtype):
    x = np.array([0, 1, 1, 0], dtype=dtype)
    out = to_unit_range(x, "s")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [0, 1, 1, 0])
    np.testing.assert_array_equal(to_unit_range(np.array([0.25, 0.5]), "s"), [0.25, 0.5])


def test_output_is_c_contiguous():
    x = np.arange(12, dtype=np.float64).reshape(3, 4).T
    out = to_unit_range(x, "s")
    assert out.flags.c_contiguous
    np.testing.assert_allclose(out, x / 255)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_are_refused_with_their_index(bad):
    x = np.zeros((3, 4))
    x[1, 2] = bad
    x[2, 3] = np.nan
    with pytest.raises(DataError, match=r"my\.csv.*\(1, 2\)"):
        to_unit_range(x, "my.csv")


@pytest.mark.parametrize("values", [[-1.0, 0.5], [0, 256], [0.0, 1000.5]])
def test_values_outside_0_255_are_kept_for_gaussian_models(values):
    out = to_unit_range(np.array(values), "s")
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, values)


@pytest.mark.parametrize(
    "x",
    [np.array([1 + 2j]), np.array(["a"]), np.array([1, None], dtype=object), np.zeros((0, 3))],
    ids=["complex", "str", "object", "empty"],
)
def test_non_numbers_and_empty_are_refused(x):
    with pytest.raises(DataError, match="src"):
        to_unit_range(x, "src")


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
