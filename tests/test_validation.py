"""Input validation: the casting rule, zero-copy paths and the errors bad input gets."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from deltaprop import _native
from deltaprop.spec import NetSpec
from deltaprop.validation import (
    as_features,
    as_parameters,
    as_targets,
    check_positive_int,
    first_nonfinite_row,
)

F32 = np.dtype(np.float32)
F64 = np.dtype(np.float64)


def spec(loss: str, n_out: int, dtype: str = "float32", bias: bool = True) -> NetSpec:
    return NetSpec.build([3, 4, n_out], loss=loss, bias=bias, dtype=dtype)


# -- features -------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [F32, F64])
def test_features_of_the_right_dtype_are_not_copied(dtype: np.dtype) -> None:
    X = np.arange(12, dtype=dtype).reshape(4, 3)
    out = as_features(X, 3, dtype)
    assert out is X or np.shares_memory(out, X)


@pytest.mark.parametrize("X", [
    [[0, 1, 2], [3, 4, 5]],
    np.arange(6, dtype=np.int64).reshape(2, 3),
    np.arange(6, dtype=np.uint8).reshape(2, 3),
    np.arange(6, dtype=np.float16).reshape(2, 3),
    np.arange(6, dtype=np.float64).reshape(3, 2).T,  # Fortran order
    np.array([[True, False, True], [False, True, False]]),
])
def test_real_inputs_are_cast_to_the_network_dtype(X: object) -> None:
    out = as_features(X, 3, F32)
    assert out.dtype == F32 and out.flags.c_contiguous and out.shape == (2, 3)
    np.testing.assert_array_equal(out, np.asarray(X, dtype=np.float32))


@pytest.mark.parametrize("X", [
    np.ones((2, 3), dtype=np.complex128),
    np.array([[1, "a", 2]], dtype=object),
    np.array([["a", "b", "c"]]),
    [[1, None, 2]],
])
def test_non_real_inputs_are_a_type_error(X: object) -> None:
    with pytest.raises(TypeError, match="real numbers"):
        as_features(X, 3, F32)


@pytest.mark.parametrize("X, match", [
    (np.ones(3), "2-D .*reshape"),
    (np.ones((2, 3, 1)), "2-D"),
    (np.ones((0, 3)), "empty"),
    (np.ones((2, 4)), "4 features .* expects 3"),
    ([[1, 2, 3], [1, 2]], "could not be read"),
])
def test_wrong_shapes_are_a_value_error(X: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        as_features(X, 3, F32)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_features_name_the_first_bad_row(bad: float) -> None:
    X = np.ones((5, 3))
    X[3, 1] = bad
    X[4, 0] = bad
    with pytest.raises(ValueError, match="row 3"):
        as_features(X, 3, F64)


def test_values_beyond_float32_range_are_refused_without_a_warning() -> None:
    X = np.ones((2, 3))
    X[1, 2] = 1e300
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="row 1"):
            as_features(X, 3, F32)


def test_large_finite_values_are_not_mistaken_for_infinity() -> None:
    X = np.full((4, 3), 1e308)  # the sum overflows; the values are fine
    assert as_features(X, 3, F64) is X


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("row", [0, 70_000, 199_999])
def test_a_non_finite_value_anywhere_in_a_large_array_is_found(dtype: np.dtype, bad: float,
                                                                row: int) -> None:
    # Large enough that the native scan splits it between threads; strided views take NumPy's
    # sum instead.
    X = np.ones((200_000, 3), dtype)
    X[row, 2] = bad
    assert first_nonfinite_row(X) == row
    assert first_nonfinite_row(X[:, 1:]) == row
    assert first_nonfinite_row(X[::-1]) == len(X) - 1 - row
    X[row, 2] = 1
    assert first_nonfinite_row(X) is None and first_nonfinite_row(X[:, 1:]) is None


def test_the_native_scan_measures_the_largest_magnitude() -> None:
    for dtype in (F32, F64):
        assert _native.largest_magnitude(np.zeros(0, dtype)) == 0
        assert _native.largest_magnitude(np.array([[1, -3], [2, 0]], dtype)) == 3
        assert np.isnan(_native.largest_magnitude(np.array([1, np.nan, np.inf], dtype)))
        assert _native.largest_magnitude(np.array([-np.inf, 2], dtype)) == np.inf


# -- targets ------------------------------------------------------------------------------

def test_class_labels_become_one_hot_rows() -> None:
    T = as_targets([2, 0, 1], spec("cross_entropy", 3), 3)
    np.testing.assert_array_equal(T, np.eye(3, dtype=np.float32)[[2, 0, 1]])
    assert T.dtype == F32


@pytest.mark.parametrize("y", [np.array([2.0, 0.0, 1.0]), np.array([2, 0, 1], dtype=np.uint64),
                               np.array([2, 0, 1], dtype=np.int8)])
def test_integral_labels_of_any_real_dtype_work(y: np.ndarray) -> None:
    T = as_targets(y, spec("cross_entropy", 3), 3)
    np.testing.assert_array_equal(T.argmax(axis=1), [2, 0, 1])


@pytest.mark.parametrize("y, match", [
    ([0, 1.5, 2], "integers; element 1"),
    ([0, 3, 1], r"\[0, 3\).*element 1"),
    ([0, -1, 1], r"\[0, 3\).*element 1"),
    ([0, 1e30, 1], r"\[0, 3\)"),
    (np.array([0, 2**63 + 5, 1], dtype=np.uint64), r"\[0, 3\)"),
    ([0, np.nan, 1], "finite"),
    ([0, 1], "2 rows but X has 3"),
    (np.zeros((3, 1)), r"\(3,\) class labels or \(3, 3\) target rows"),
    (np.full((3, 3), 0.5), "probability distributions"),
])
def test_bad_cross_entropy_targets(y: object, match: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=match):
            as_targets(y, spec("cross_entropy", 3), 3)


def test_target_rows_whose_sum_overflows_are_refused_without_a_warning() -> None:
    # Found by .ci/fuzz: the row-sum check's float64 sum overflowed with a RuntimeWarning.
    y = np.array([[1e308, 1e308, 0.0], [0.0, 1.0, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="probability distributions.*row 0"):
            as_targets(y, spec("cross_entropy", 3, "float64"), 2)


def test_target_rows_of_the_right_dtype_are_not_copied() -> None:
    y = np.eye(3, dtype=np.float32)[[0, 2, 1, 1]]
    assert np.shares_memory(as_targets(y, spec("cross_entropy", 3), 4), y)
    y1 = np.array([0.0, 1.0, 0.25], dtype=np.float32)
    T = as_targets(y1, spec("binary_cross_entropy", 1), 3)
    assert T.shape == (3, 1) and np.shares_memory(T, y1)
    assert np.shares_memory(as_targets(y1, spec("mse", 1), 3), y1)


@pytest.mark.parametrize("loss", ["binary_cross_entropy", "mse"])
def test_one_dimensional_targets_need_one_output(loss: str) -> None:
    with pytest.raises(ValueError, match=r"shape \(3, 2\)"):
        as_targets([0.0, 1.0, 1.0], spec(loss, 2), 3)


def test_binary_targets_must_lie_in_the_unit_interval() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]; row 1"):
        as_targets([[0, 1], [1, 2], [0, 0]], spec("binary_cross_entropy", 2), 3)


def test_mse_targets_may_be_any_finite_value() -> None:
    T = as_targets([[-5, 1e6], [3, 0]], spec("mse", 2, "float64"), 2)
    assert T.dtype == F64 and T.shape == (2, 2)
    with pytest.raises(ValueError, match="finite"):
        as_targets([[1, np.inf], [3, 0]], spec("mse", 2), 2)
    with pytest.raises(TypeError):
        as_targets(np.ones((2, 2), dtype=complex), spec("mse", 2), 2)


# -- parameters and counts ----------------------------------------------------------------

def test_parameters_are_copied_and_checked() -> None:
    s = spec("mse", 2, "float64")
    W = [np.ones((3, 4)), np.ones((4, 2))]
    b = [np.zeros(4), np.zeros(2)]
    Wc, bc = as_parameters(W, b, s)
    assert not np.shares_memory(Wc[0], W[0]) and bc is not None
    with pytest.raises(ValueError, match="2 arrays .* got 1"):
        as_parameters(W[:1], b, s)
    with pytest.raises(ValueError, match=r"weights\[1\] must have shape \(4, 2\)"):
        as_parameters([W[0], W[1].T], b, s)
    with pytest.raises(ValueError, match="has biases"):
        as_parameters(W, None, s)
    with pytest.raises(ValueError, match="bias=False"):
        as_parameters(W, b, spec("mse", 2, bias=False))
    with pytest.raises(ValueError, match=r"biases\[0\] must be finite"):
        as_parameters(W, [np.full(4, np.nan), b[1]], s)
    with pytest.raises(TypeError):
        as_parameters(np.ones((3, 4)), b, s)


@pytest.mark.parametrize("value, error", [(0, ValueError), (-3, ValueError), (1.0, TypeError),
                                          (True, TypeError), ("2", TypeError)])
def test_positive_ints(value: object, error: type) -> None:
    with pytest.raises(error):
        check_positive_int(value, "epochs")
    assert check_positive_int(np.int32(7), "epochs") == 7
