"""Scaling (data/scaling.py): the math of each method, fitting in chunks, the ``auto`` rules,
refusals, and the stored record."""

import json

import numpy as np
import pytest

from vaekit.data import scaling
from vaekit.data.scaling import SCALING_FILE, Scaling, fit, fit_array, resolve
from vaekit.errors import ConfigError, DataError

RNG = np.random.default_rng(0)


def _features() -> np.ndarray:
    """Examples (N, 2, 3) whose six features have different means and spreads."""
    return (RNG.normal(size=(500, 2, 3)) * [[1, 10, 0.1]] + [[5, -3, 100]]).astype(np.float64)


def test_standardize_gives_each_feature_mean_0_and_std_1():
    x = _features()
    s = fit_array("standardize", x)
    assert s.shift.shape == s.scale.shape == (2, 3)
    z = s.apply(x)
    assert z.dtype == np.float32 and z.shape == x.shape and z.flags.c_contiguous
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-4)  # float32 near 100, / 0.1
    np.testing.assert_allclose(z.std(axis=0), 1, rtol=1e-5)
    assert s.low == pytest.approx(z.min()) and s.high == pytest.approx(z.max())


@pytest.mark.parametrize("method", ["standardize", "minmax"])
@pytest.mark.parametrize("seed", range(5))
def test_fitting_in_chunks_equals_fitting_whole(method, seed):
    x = _features()
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(1, len(x)), rng.integers(1, 20), replace=False))
    chunked = fit(method, np.split(x, cuts), x.dtype)
    whole = fit(method, [x], x.dtype)
    np.testing.assert_allclose(chunked.shift, whole.shift, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(chunked.scale, whole.scale, rtol=1e-6)
    np.testing.assert_allclose(
        whole.shift, x.mean(0) if method == "standardize" else x.min(0), 1e-6
    )


def test_minmax_maps_training_data_onto_0_1_hitting_both_ends():
    x = _features()
    s = fit_array("minmax", x)
    z = s.apply(x)
    assert z.min() >= 0 and z.max() <= 1
    np.testing.assert_allclose(z.min(axis=0), 0, atol=1e-6)
    np.testing.assert_allclose(z.max(axis=0), 1, atol=1e-6)
    assert (s.low, s.high) == pytest.approx((0, 1), abs=1e-6)


def test_unit_is_division_by_255_bit_for_bit():
    x = RNG.integers(0, 256, (50, 7), dtype=np.uint8)
    s = fit_array("unit", x)
    np.testing.assert_array_equal(s.apply(x), x.astype(np.float32) / np.float32(255))
    assert (s.low, s.high) == pytest.approx((x.min() / 255, x.max() / 255))


@pytest.mark.parametrize(
    ("dtype", "pixels", "method"),
    [
        (np.uint8, False, "unit"),
        (np.float32, True, "unit"),  # 16-bit images are float32 levels 0…255
        (np.float64, False, "none"),
        (np.int64, False, "none"),
        (np.uint16, False, "none"),
    ],
)
def test_auto_divides_only_8_bit_levels(dtype, pixels, method):
    assert resolve("auto", np.dtype(dtype), pixels) == method
    assert resolve("minmax", np.dtype(dtype), pixels) == "minmax"


def test_auto_leaves_a_table_of_ages_alone():
    ages = np.array([[3.0], [41.0], [100.0], [0.0]])  # a CSV column: float64, 0…100
    s = fit_array("auto", ages)
    assert s.method == "none"
    np.testing.assert_array_equal(s.apply(ages), ages.astype(np.float32))


def test_unknown_method_is_a_config_error():
    with pytest.raises(ConfigError, match="scale must be one of"):
        resolve("log", np.dtype(np.float32), False)


def test_constant_features_are_kept_finite():
    x = np.column_stack([np.full(10, 7.0), np.arange(10.0)])
    for method in ("standardize", "minmax"):
        s = fit_array(method, x)
        assert s.scale[0] == 1
        z = s.apply(x)
        assert np.isfinite(z).all()
        np.testing.assert_array_equal(z[:, 0], 0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e300])
def test_non_finite_values_are_refused_naming_their_index(bad):
    x = np.zeros((3, 4))
    x[1, 2] = bad
    x[2, 3] = np.nan if bad != 1e300 else 0  # the first bad value is the one named
    for call in (
        lambda: fit_array("standardize", x, source="my.csv"),
        lambda: _none().apply(x, "my.csv"),
    ):
        with pytest.raises(DataError, match=r"my\.csv has a NaN or infinite value.*\(1, 2\)"):
            call()


def _none() -> Scaling:
    return fit_array("none", np.zeros((1, 4)))


@pytest.mark.parametrize(
    "x",
    [np.array([[1 + 2j]]), np.array([["a"]]), np.array([[1, None]], dtype=object)],
    ids=["complex", "str", "object"],
)
def test_non_numbers_are_refused(x):
    with pytest.raises(DataError, match="src holds values of type"):
        fit_array("auto", x, source="src")


def test_no_examples_is_refused():
    with pytest.raises(DataError, match="no examples"):
        fit("standardize", [np.zeros((0, 3))], np.dtype(np.float64))


@pytest.mark.parametrize("method", ["none", "unit", "standardize", "minmax"])
def test_invert_undoes_apply(method):
    x = RNG.integers(0, 256, (40, 3, 2)).astype(np.float64)
    s = fit_array(method, x)
    np.testing.assert_allclose(s.invert(s.apply(x)), x, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("method", ["none", "unit", "standardize", "minmax"])
def test_record_round_trips_through_json_and_a_run_directory(tmp_path, method):
    x = _features()
    s = fit_array(method, x)
    again = Scaling.from_json(json.loads(json.dumps(s.to_json())))
    np.testing.assert_array_equal(again.apply(x), s.apply(x))
    s.save(tmp_path)
    loaded = Scaling.load(tmp_path)
    assert loaded.method == s.method and (loaded.low, loaded.high) == (s.low, s.high)
    np.testing.assert_array_equal(loaded.apply(x), s.apply(x))
    assert Scaling.load(tmp_path / "elsewhere") is None  # a run from before scalings


@pytest.mark.parametrize(
    "edit",
    [
        lambda r: r.update(method="auto"),
        lambda r: r.update(method="log"),
        lambda r: r.pop("scale"),
        lambda r: r.update(shape=[5]),
        lambda r: r.update(scale=[0.0] * 6),
        lambda r: r.update(shift=[float("nan")] * 6),
        lambda r: r.update(low="x"),
        lambda r: r.update(scale="text"),
    ],
    ids=["auto", "unknown", "missing", "shape", "zero-scale", "nan-shift", "low", "text"],
)
def test_damaged_records_are_refused(tmp_path, edit):
    record = fit_array("standardize", _features()).to_json()
    edit(record)
    with pytest.raises(DataError, match="scaling"):
        Scaling.from_json(record, "scaling.json")
    (tmp_path / SCALING_FILE).write_text(json.dumps(record))
    with pytest.raises(DataError):
        Scaling.load(tmp_path)


def test_unreadable_record_file_is_refused(tmp_path):
    (tmp_path / SCALING_FILE).write_bytes(b"\xff{not json")
    with pytest.raises(DataError, match="could not be read"):
        Scaling.load(tmp_path)
    assert scaling.FIT_CHUNK > 0
