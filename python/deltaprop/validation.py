"""Turning user input into what backends take.

Backends receive C-contiguous arrays of the network dtype with the right shapes, dense targets
``T`` of shape ``(B, n_L)`` and finite values (see :mod:`deltaprop.backends`). Everything that
can be wrong with user input is caught here, before a backend sees it.

Casting rule: any real numeric array (bool, signed or unsigned integer, any float) is cast to
the network's dtype, as ``np.asarray(x, dtype)`` would; complex, object, string, datetime and
structured arrays raise ``TypeError``. An array that is already C-contiguous and of the network
dtype is used as it is, without a copy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _native
from .spec import NetSpec

# bool, signed int, unsigned int, float: the kinds that convert to a float without losing
# meaning. Complex ('c') would silently drop its imaginary part.
_REAL_KINDS = "biuf"


def as_real_array(x: Any, name: str) -> np.ndarray:
    """Return ``x`` as an ndarray of a real numeric dtype (no cast, no copy if already one)."""
    if isinstance(x, np.ndarray):
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except (ValueError, TypeError) as exc:  # ragged nested lists, for one
            raise ValueError(f"{name} could not be read as an array: {exc}") from None
    if arr.dtype.kind not in _REAL_KINDS:
        raise TypeError(
            f"{name} must hold real numbers (bool, int or float); got dtype {arr.dtype}"
        )
    return arr


def cast(arr: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """C-contiguous ``arr`` in ``dtype``; the array itself when it already is one."""
    # float64 values beyond float32's range become inf; the finiteness check reports them,
    # so the cast's own overflow warning would only be noise.
    with np.errstate(over="ignore", invalid="ignore"):
        return np.ascontiguousarray(arr, dtype=dtype)


def first_nonfinite_row(arr: np.ndarray) -> int | None:
    """Index of the first row (first axis) holding NaN or ±inf, or None when all are finite."""
    # One reduction proves an array finite in the common case. For C-contiguous float32/float64
    # it is the native max |x|, on all threads: NumPy's sum, on one, took 11 ms over an
    # MNIST-shaped X (4% of a one-epoch fit). Otherwise the sum, in the array's own dtype (a
    # float64 accumulator made NumPy convert every float32 element first): any NaN or inf makes
    # it NaN or inf. Only a non-finite result pays for the full elementwise test.
    with np.errstate(over="ignore", invalid="ignore"):
        if arr.dtype in (np.float32, np.float64) and arr.flags.c_contiguous:
            total = _native.largest_magnitude(arr)
        else:
            total = arr.sum()
    if np.isfinite(total):
        return None
    # Row blocks keep the boolean mask small: arr may be a memory map larger than memory.
    flat = arr.reshape(arr.shape[0], -1)
    step = max(1, (1 << 20) // max(flat.shape[1], 1))
    for lo in range(0, flat.shape[0], step):
        bad = np.flatnonzero(~np.isfinite(flat[lo:lo + step]).all(axis=1))
        if bad.size:
            return lo + int(bad[0])
    return None


def check_finite(arr: np.ndarray, name: str) -> None:
    """Raise ValueError naming the first row of ``arr`` holding NaN or infinity."""
    if arr.size == 0 or arr.dtype.kind != "f":
        return
    row = first_nonfinite_row(arr)
    if row is not None:
        where = f"row {row}" if arr.ndim > 1 else f"element {row}"
        raise ValueError(
            f"{name} must be finite; {where} holds NaN or infinity "
            f"(in {arr.dtype}): {arr[row]!r}"
        )


def as_features(X: Any, n_features: int, dtype: np.dtype | str, name: str = "X") -> np.ndarray:
    """Validate a feature matrix and return it as a C-contiguous ``(B, n_features)`` array.

    :func:`features_and_largest` does the same and also returns max |X|.

    Parameters
    ----------
    X : array_like
        Samples in rows. Lists are accepted; see the module docstring for the casting rule.
    n_features : int
        The number of columns expected (the network's input size).
    dtype : numpy dtype
        The network's dtype; ``X`` is returned in it, without a copy when it already is.

    Raises
    ------
    TypeError
        For non-real dtypes (complex, object, strings).
    ValueError
        For a rank other than 2, a width other than ``n_features``, no rows, or NaN/infinity.
    """
    return features_and_largest(X, n_features, dtype, name)[0]


def features_and_largest(X: Any, n_features: int, dtype: np.dtype | str,
                         name: str = "X") -> tuple[np.ndarray, float]:
    """:func:`as_features`, and max |X|, which the finiteness check measures anyway.

    The native ``fit_epoch`` takes that bound (its divergence guard's bound on the first layer's
    inputs) instead of scanning X again every epoch: each scan of an MNIST-shaped X took 5.9 ms
    at 2 threads, 2% of an epoch.
    """
    arr = as_real_array(X, name)
    if arr.ndim != 2:
        hint = " (use X.reshape(1, -1) for a single sample)" if arr.ndim == 1 else ""
        raise ValueError(
            f"{name} must be 2-D with shape (n_samples, {n_features}); got {arr.ndim}-D array "
            f"of shape {arr.shape}{hint}"
        )
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: shape {arr.shape}; need at least one sample")
    if arr.shape[1] != n_features:
        raise ValueError(f"{name} has {arr.shape[1]} features per sample; the network expects "
                         f"{n_features} (shape {arr.shape})")
    out = cast(arr, np.dtype(dtype))  # C-contiguous float32 or float64: the native scan takes it
    largest = float(_native.largest_magnitude(out)) if out.size else 0.0
    if not np.isfinite(largest):
        check_finite(out, name)  # names the first bad row
    return out, largest


def as_labels(y: np.ndarray, n_classes: int, name: str = "y") -> np.ndarray:
    """Return class labels ``(B,)`` as int64, checking they are integers in ``[0, n_classes)``."""
    if y.dtype.kind == "f":
        check_finite(y, name)
        if not np.array_equal(y, np.round(y)):
            i = int(np.flatnonzero(y != np.round(y))[0])
            raise ValueError(f"class labels in {name} must be integers; element {i} is {y[i]!r}")
    # Compare in the input's own dtype: a huge float or uint64 would not survive the cast.
    out_of_range = (y < 0) | (y >= n_classes)
    if out_of_range.any():
        i = int(np.flatnonzero(out_of_range)[0])
        raise ValueError(
            f"class labels in {name} must be in [0, {n_classes}) for a network with {n_classes} "
            f"outputs; element {i} is {y[i]!r}"
        )
    labels = y.astype(np.int64, copy=False)
    return labels


def _check_unit_interval(T: np.ndarray, name: str) -> None:
    bad = (T < 0) | (T > 1)
    if bad.any():
        row = int(np.flatnonzero(bad.any(axis=1))[0])
        raise ValueError(f"binary_cross_entropy targets in {name} must be in [0, 1]; "
                         f"row {row} is {T[row]!r}")


# Soft cross-entropy targets must be distributions: the fused output delta (softmax − T)/B is
# the gradient of −Σ t log softmax only when each row of T sums to 1.
_ROW_SUM_ATOL = 1e-3


def _check_distributions(T: np.ndarray, name: str) -> None:
    # Entries near float64's maximum sum to inf, which the bound below rejects: no warning.
    with np.errstate(over="ignore"):
        sums = T.sum(axis=1, dtype=np.float64)
    bad = (T < 0).any(axis=1) | (np.abs(sums - 1) > _ROW_SUM_ATOL)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"cross_entropy target rows in {name} must be probability distributions "
            f"(non-negative, summing to 1) or pass class labels of shape (n_samples,); "
            f"row {row} is {T[row]!r}"
        )


def as_targets(y: Any, spec: NetSpec, n_rows: int, name: str = "y") -> np.ndarray:
    """Validate targets and return them as a dense C-contiguous ``(n_rows, n_L)`` array.

    Parameters
    ----------
    y : array_like
        cross_entropy: integer class labels ``(B,)`` in ``[0, n_L)`` (floats with integral
        values are fine) or target rows ``(B, n_L)`` (non-negative, each summing to 1).
        binary_cross_entropy: ``(B, n_L)`` in ``[0, 1]``, or ``(B,)`` when ``n_L == 1``.
        mse: ``(B, n_L)``, or ``(B,)`` when ``n_L == 1``.
    spec : NetSpec
        The network: its loss, output size and dtype.
    n_rows : int
        The number of samples in the matching ``X``.

    Raises
    ------
    TypeError
        For non-real dtypes.
    ValueError
        For a wrong shape, NaN/infinity, labels out of range or targets outside ``[0, 1]``.
    """
    arr = as_real_array(y, name)
    n_out = spec.sizes[-1]
    dtype = spec.dtype
    if arr.ndim not in (1, 2):
        raise ValueError(f"{name} must be 1-D or 2-D; got shape {arr.shape}")
    if arr.shape[0] != n_rows:
        raise ValueError(f"{name} has {arr.shape[0]} rows but X has {n_rows}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty; need at least one target")
    if spec.loss == "cross_entropy" and arr.ndim == 1:
        labels = as_labels(arr, n_out, name)
        T = np.zeros((n_rows, n_out), dtype=dtype)
        T[np.arange(n_rows), labels] = 1
        return T
    if arr.ndim == 1:
        if n_out != 1:
            raise ValueError(f"{name} must have shape ({n_rows}, {n_out}) for {spec.loss} with "
                             f"{n_out} outputs; got shape {arr.shape}")
        arr = arr.reshape(n_rows, 1)
    if arr.shape[1] != n_out:
        expected = f"({n_rows},) class labels or ({n_rows}, {n_out}) target rows" \
            if spec.loss == "cross_entropy" else f"({n_rows}, {n_out})"
        raise ValueError(f"{name} must have shape {expected} for a network with {n_out} "
                         f"outputs; got shape {arr.shape}")
    T = cast(arr, dtype)
    check_finite(T, name)
    if spec.loss == "binary_cross_entropy":
        _check_unit_interval(T, name)
    elif spec.loss == "cross_entropy":
        _check_distributions(T, name)
    return T


def as_parameters(weights: Any, biases: Any, spec: NetSpec
                  ) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    """Validate weights and biases for ``spec`` and return fresh C-contiguous copies.

    ``weights[l]`` must have shape ``(sizes[l], sizes[l+1])`` and ``biases[l]`` shape
    ``(sizes[l+1],)``; ``biases`` is None exactly when ``spec.bias`` is False. Values must be
    finite real numbers (cast to ``spec.dtype``).
    """
    L = spec.n_layers
    if isinstance(weights, np.ndarray) or not isinstance(weights, (list, tuple)):
        raise TypeError(f"weights must be a list of {L} arrays; got {type(weights).__name__}")
    if len(weights) != L:
        raise ValueError(f"weights must hold {L} arrays (one per layer); got {len(weights)}")
    if spec.bias:
        if biases is None:
            raise ValueError(f"this network has biases: pass a list of {L} bias vectors")
        if isinstance(biases, np.ndarray) or not isinstance(biases, (list, tuple)):
            raise TypeError(f"biases must be a list of {L} arrays; got {type(biases).__name__}")
        if len(biases) != L:
            raise ValueError(f"biases must hold {L} arrays (one per layer); got {len(biases)}")
    elif biases is not None:
        raise ValueError("this network was built with bias=False: pass biases=None")
    Ws = []
    for i, W in enumerate(weights):
        arr = as_real_array(W, f"weights[{i}]")
        shape = (spec.sizes[i], spec.sizes[i + 1])
        if arr.shape != shape:
            raise ValueError(f"weights[{i}] must have shape {shape}; got {arr.shape}")
        Ws.append(cast(arr, spec.dtype).copy())
        check_finite(Ws[-1], f"weights[{i}]")
    if biases is None:
        return Ws, None
    bs = []
    for i, b in enumerate(biases):
        arr = as_real_array(b, f"biases[{i}]")
        shape = (spec.sizes[i + 1],)
        if arr.shape != shape:
            raise ValueError(f"biases[{i}] must have shape {shape}; got {arr.shape}")
        bs.append(cast(arr, spec.dtype).copy())
        check_finite(bs[-1], f"biases[{i}]")
    return Ws, bs


def check_positive_int(value: Any, name: str) -> int:
    """Return ``value`` as an int if it is a positive integer (not a bool), else raise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a positive int; got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive int; got {value}")
    return int(value)
