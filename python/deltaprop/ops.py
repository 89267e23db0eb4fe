"""The three loops of backpropagation, one layer at a time, on either backend.

These are the building blocks :class:`deltaprop.MLP` fuses into whole training steps, exposed so
each formula of DESIGN §1 can be run, inspected and cross-checked on its own::

    A  = forward(A_prev, W, b, activation)        # g(A_prev W + b)
    DL = output_delta(A_L, T, loss, activation)   # ∂E/∂Z_L of the batch-mean loss
    Dp = delta(D, W, A_prev, activation)          # (D Wᵀ) ⊙ g'(A_prev), activation of layer l-1
    update(W, b, A_prev, D, lr)                   # W −= lr A_prevᵀ D, b −= lr Σ_rows D, in place

Each function computes in the dtype of its weight matrix ``W`` (of ``A_L`` for output_delta):
float32 or float64 arrays keep theirs, anything else is computed in float64. Other array
arguments are cast to that dtype (see :mod:`deltaprop.validation` for the casting rule).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .backends import get_backend
from .spec import ACTIVATIONS, DTYPES, HIDDEN_ACTIVATIONS, NetSpec, check_name
from .validation import as_real_array, as_targets, cast, check_finite


def _dtype_of(x: Any) -> np.dtype:
    if isinstance(x, np.ndarray) and x.dtype.name in DTYPES:
        return x.dtype
    return np.dtype(np.float64)


def _array(x: Any, name: str, dtype: np.dtype, shape: tuple[int | None, ...]) -> np.ndarray:
    """``x`` as a finite C-contiguous array of ``dtype`` whose shape matches ``shape``.

    ``None`` in ``shape`` accepts any positive length.
    """
    arr = as_real_array(x, name)
    want = "(" + ", ".join("n" if s is None else str(s) for s in shape) + \
        ("," if len(shape) == 1 else "") + ")"
    if arr.ndim != len(shape) or any(s is not None and s != n for s, n in zip(shape, arr.shape)):
        raise ValueError(f"{name} must have shape {want}; got {arr.shape}")
    if 0 in arr.shape:
        raise ValueError(f"{name} is empty: shape {arr.shape}")
    out = cast(arr, dtype)
    check_finite(out, name)
    return out


def _alpha(alpha: Any) -> float:
    if isinstance(alpha, (bool, np.bool_)) or not isinstance(alpha, (int, float, np.number)):
        raise TypeError(f"alpha must be a float; got {type(alpha).__name__}")
    if not (np.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"alpha must be finite and >= 0; got {alpha}")
    return float(alpha)


def _layer(W: Any, activation: str, allowed: Any, alpha: Any) -> tuple[np.ndarray, float]:
    """A layer's weights (as an array of their own dtype) and alpha, its activation checked."""
    check_name("activation", activation, allowed)
    alpha = _alpha(alpha)
    return _array(W, "W", _dtype_of(W), (None, None)), alpha


def forward(A_prev: Any, W: Any, b: Any, activation: str = "sigmoid", alpha: float = 0.01,
            backend: str = "native") -> np.ndarray:
    """Return ``A = g(A_prev W + b)`` for one layer.

    Parameters
    ----------
    A_prev : array_like, shape (B, n_in)
        The previous layer's output (or the input ``X``).
    W : array_like, shape (n_in, n_out)
    b : array_like of shape (n_out,), or None for a layer without bias
    activation : str
        identity, sigmoid, tanh, relu, leaky_relu or softmax.
    alpha : float
        leaky_relu's slope for negative inputs.
    backend : {"native", "reference"}
    """
    module = get_backend(backend)
    Wc, alpha = _layer(W, activation, ACTIVATIONS, alpha)
    n_in, n_out = Wc.shape
    A = _array(A_prev, "A_prev", Wc.dtype, (None, n_in))
    bc = None if b is None else _array(b, "b", Wc.dtype, (n_out,))
    return module.forward_layer(A, Wc, bc, activation, alpha)


def output_delta(A_L: Any, T: Any, loss: str = "mse", activation: str | None = None,
                 alpha: float = 0.01, backend: str = "native") -> np.ndarray:
    """Return ``D_L = ∂E/∂Z_L`` of the batch-mean loss at the output layer.

    mse gives ``(A_L − T) ⊙ g'(A_L) / B``; cross_entropy (softmax) and binary_cross_entropy
    (sigmoid) give ``(A_L − T) / B``.

    Parameters
    ----------
    A_L : array_like, shape (B, n_L)
        The output activations.
    T : array_like
        Targets as :meth:`deltaprop.MLP.fit` takes them (class labels are fine for
        cross_entropy).
    loss : {"mse", "cross_entropy", "binary_cross_entropy"}
    activation : str or None
        The output activation; None means the loss's own (identity, softmax, sigmoid).
    """
    module = get_backend(backend)
    dtype = _dtype_of(A_L)
    A = _array(A_L, "A_L", dtype, (None, None))
    # A one-layer spec runs exactly the loss/activation and target checks a network would.
    spec = NetSpec.build([A.shape[1], A.shape[1]], loss=loss, output_activation=activation,
                         alpha=_alpha(alpha), dtype=dtype)
    Tc = as_targets(T, spec, A.shape[0], "T")
    return module.output_delta(A, Tc, spec.loss, spec.output_activation, spec.alpha)


def delta(D: Any, W: Any, A_prev: Any, activation: str = "sigmoid", alpha: float = 0.01,
          backend: str = "native") -> np.ndarray:
    """Return ``D_{l-1} = (D_l W_lᵀ) ⊙ g_{l-1}'(A_{l-1})``.

    Parameters
    ----------
    D : array_like, shape (B, n_out)
        Layer ``l``'s delta.
    W : array_like, shape (n_in, n_out)
        Layer ``l``'s weights (before any update).
    A_prev : array_like, shape (B, n_in)
        Layer ``l-1``'s output, from which its derivative is evaluated.
    activation : str
        Layer ``l-1``'s activation (not softmax).
    """
    module = get_backend(backend)
    Wc, alpha = _layer(W, activation, HIDDEN_ACTIVATIONS, alpha)
    n_in, n_out = Wc.shape
    Dc = _array(D, "D", Wc.dtype, (None, n_out))
    A = _array(A_prev, "A_prev", Wc.dtype, (Dc.shape[0], n_in))
    return module.delta(Dc, Wc, A, activation, alpha)


def _in_place(x: Any, name: str, dtype: np.dtype | None) -> np.ndarray:
    """Check that ``x`` can be updated where it lies: updating a copy would lose the result."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} is updated in place, so it must be a NumPy array; "
                        f"got {type(x).__name__}")
    if dtype is None and x.dtype.name not in DTYPES:
        raise TypeError(f"{name} must be float32 or float64 to be updated in place; "
                        f"got {x.dtype}")
    if dtype is not None and x.dtype != dtype:
        raise TypeError(f"{name} must have W's dtype {dtype}; got {x.dtype}")
    if not x.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous to be updated in place; pass "
                         f"np.ascontiguousarray({name}) and keep that array")
    if not x.flags.writeable:
        raise ValueError(f"{name} is read-only; it is updated in place")
    return x


def update(W: np.ndarray, b: np.ndarray | None, A_prev: Any, D: Any, lr: float,
           backend: str = "native") -> None:
    """Plain gradient step in place: ``W −= lr A_prevᵀ D`` and ``b −= lr Σ_rows D``.

    ``W`` and ``b`` must be writable C-contiguous float32/float64 arrays of one dtype (a
    converted copy would be updated and thrown away, so none is made); ``A_prev`` and ``D`` are
    cast to it.

    Parameters
    ----------
    W : ndarray, shape (n_in, n_out)
    b : ndarray of shape (n_out,), or None
    A_prev : array_like, shape (B, n_in)
    D : array_like, shape (B, n_out)
        This layer's delta, computed before the update.
    lr : float
        Positive learning rate.
    """
    module = get_backend(backend)
    Wc = _in_place(W, "W", None)
    if Wc.ndim != 2 or 0 in Wc.shape:
        raise ValueError(f"W must be a non-empty 2-D array; got shape {Wc.shape}")
    check_finite(Wc, "W")
    n_in, n_out = Wc.shape
    bc = None
    if b is not None:
        bc = _in_place(b, "b", Wc.dtype)
        if bc.shape != (n_out,):
            raise ValueError(f"b must have shape ({n_out},); got {bc.shape}")
        check_finite(bc, "b")
    if isinstance(lr, (bool, np.bool_)) or not isinstance(lr, (int, float, np.number)):
        raise TypeError(f"lr must be a float; got {type(lr).__name__}")
    # The kernels take lr in W's dtype, where a float64 lr can overflow to inf or round to 0.
    with np.errstate(over="ignore", under="ignore"):
        lr_in_dtype = Wc.dtype.type(lr)
    if not (np.isfinite(lr_in_dtype) and lr_in_dtype > 0):
        raise ValueError(f"lr must be positive and finite in {Wc.dtype.name}; got {lr}")
    A = _array(A_prev, "A_prev", Wc.dtype, (None, n_in))
    Dc = _array(D, "D", Wc.dtype, (A.shape[0], n_out))
    for name, arr in (("A_prev", A), ("D", Dc)):
        if np.may_share_memory(arr, Wc) or (bc is not None and np.may_share_memory(arr, bc)):
            raise ValueError(f"{name} overlaps the W or b being updated; pass a copy")
    module.update(Wc, bc, A, Dc, float(lr))
