"""The vectorised exp behind sigmoid and tanh: error bounds over the whole range, every ISA."""

from __future__ import annotations

import numpy as np
import pytest

from deltaprop import _native

ISAS = _native.cpu_info()["isas_supported"]
DTYPES = [np.float32, np.float64]


@pytest.fixture(params=ISAS)
def isa(request):
    original = _native.cpu_info()["isa"]
    _native.select_isa(request.param)
    yield request.param
    _native.select_isa(original)


def _grid(dtype: type) -> np.ndarray:
    """Every regime: saturation on both sides, the middle, and tiny magnitudes."""
    limit = 120.0 if dtype == np.float32 else 800.0
    tiny = np.geomspace(1e-30, 1.0, 4001)
    return np.concatenate([np.linspace(-limit, limit, 100001), tiny, -tiny]).astype(dtype)


def _ulps(got: np.ndarray, exact: np.ndarray, dtype: type) -> np.ndarray:
    """Error in units in the last place of the correctly rounded result."""
    rounded = exact.astype(dtype)
    spacing = np.spacing(np.abs(rounded)).astype(np.longdouble)
    return np.abs(got.astype(np.longdouble) - exact) / spacing


EXACT = {
    "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    "tanh": np.tanh,
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
def test_within_2_5_ulp_of_the_exact_value(isa: str, dtype: type, name: str) -> None:
    z = _grid(dtype)
    with np.errstate(over="ignore"):
        exact = EXACT[name](z.astype(np.longdouble))
    got = _native.apply_activation(z.reshape(1, -1), name)[0]
    assert got.dtype == dtype
    normal = np.abs(exact) >= np.finfo(dtype).tiny
    assert _ulps(got[normal], exact[normal], dtype).max() <= 2.5
    # Below the smallest normal number results are flushed to zero: an absolute error that small.
    assert np.abs(got[~normal].astype(np.longdouble) - exact[~normal]).max(initial=0) < np.finfo(
        dtype).tiny


@pytest.mark.parametrize("dtype", DTYPES)
def test_limits_and_special_values(isa: str, dtype: type) -> None:
    # Five copies in one row: rows run in whole vectors (up to 16 lanes) and then element by
    # element, and every value passes through both.
    z = np.tile(np.array([[np.inf, -np.inf, np.nan, 0.0, -0.0, 1e4, -1e4]], dtype=dtype), 5)
    sig = _native.apply_activation(z, "sigmoid")[0]
    tanh = _native.apply_activation(z, "tanh")[0]
    np.testing.assert_array_equal(
        sig, np.tile(np.array([1, 0, np.nan, 0.5, 0.5, 1, 0], dtype=dtype), 5))
    np.testing.assert_array_equal(
        tanh, np.tile(np.array([1, -1, np.nan, 0, 0, 1, -1], dtype=dtype), 5))
    assert not np.signbit(tanh[3::7]).any() and np.signbit(tanh[4::7]).all()  # tanh(±0) = ±0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["identity", "relu", "leaky_relu"])
def test_piecewise_linear_activations_are_exact(isa: str, dtype: type, name: str) -> None:
    z = np.linspace(-5, 5, 1001, dtype=dtype).reshape(7, -1)[:, :143].copy()
    expected = {"identity": z, "relu": np.maximum(z, 0),
                "leaky_relu": np.where(z > 0, z, dtype(0.2) * z)}
    np.testing.assert_array_equal(_native.apply_activation(z, name, 0.2), expected[name])


def test_softmax_and_unknown_names_are_refused() -> None:
    z = np.zeros((2, 3))
    with pytest.raises(ValueError, match="elementwise"):
        _native.apply_activation(z, "softmax")
    with pytest.raises(ValueError, match="expected one of"):
        _native.apply_activation(z, "gelu")
