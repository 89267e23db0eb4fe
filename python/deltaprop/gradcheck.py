"""Layered oracles for gradients: a network's backend against the NumPy reference, and both
against central finite differences of the loss.

The finite differences are taken in float64 on the reference backend, whatever the network's
dtype, so they are accurate to ~1e-9 relative and can judge a float32 backend too. The first
oracle is the reference backend itself, started from the same weights: a native gradient that
differs from it points at the C++ kernels; a reference gradient that differs from finite
differences points at the formulas.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .backends import get_backend
from .mlp import MLP


def _rel_error(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """The largest per-array ``max|a − b| / max(|a|, |b|)`` over the arrays.

    Each array is scaled by its own largest entry, so a small layer cannot hide behind a large
    one; a floor of 1e-6 times the largest gradient anywhere keeps arrays of (near) zero
    gradients — dead ReLUs — from dividing rounding noise by nothing.
    """
    scale = max((max(np.abs(x).max(), np.abs(y).max()) for x, y in zip(a, b)), default=0.0)
    floor = max(1e-6 * scale, np.finfo(np.float64).tiny)
    worst = 0.0
    for x, y in zip(a, b):
        x64, y64 = x.astype(np.float64), y.astype(np.float64)
        denom = max(np.abs(x64).max(), np.abs(y64).max(), floor)
        err = np.abs(x64 - y64).max() / denom
        if not np.isfinite(err):
            return float("inf")
        worst = max(worst, float(err))
    return worst


def _positive(value: Any, name: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"{name} must be a positive float; got {type(value).__name__}")
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be positive and finite; got {value}")
    return float(value)


def check_gradients(net: MLP, X: Any, y: Any, eps: float | None = None,
                    rtol: float | None = None, *, max_entries: int = 200) -> dict[str, Any]:
    """Compare ``net``'s gradients with the reference backend's and with finite differences.

    Parameters
    ----------
    net : MLP
        The network, on any backend; it is not modified.
    X, y : array_like
        A batch, validated as :meth:`MLP.loss` does.
    eps : float, optional
        Step of the central differences ``(E(w + eps) − E(w − eps)) / 2 eps``, taken in
        float64. Default 1e-6.
    rtol : float, optional
        The largest relative error that passes: default 1e-6 for float64 networks and 1e-3 for
        float32 ones (float32 gradients are judged against float64 differences).
    max_entries : int
        Finite differences cost two forward passes per parameter, so at most this many entries
        of each weight or bias array are probed (drawn with the net's seed); all of them when
        the array is smaller.

    Returns
    -------
    dict
        ``backend_vs_reference``, ``backend_vs_finite_differences`` and
        ``reference_vs_finite_differences`` (largest relative errors, see ``_rel_error``),
        ``n_probed``, ``eps``, ``rtol`` and ``ok`` (all three errors within ``rtol``). A
        mismatch is reported through ``ok``, never raised.
    """
    if not isinstance(net, MLP):
        raise TypeError(f"net must be a deltaprop.MLP; got {type(net).__name__}")
    eps = 1e-6 if eps is None else _positive(eps, "eps")
    if rtol is None:
        rtol = 1e-6 if net.dtype == np.float64 else 1e-3
    rtol = _positive(rtol, "rtol")
    if isinstance(max_entries, (bool, np.bool_)) or not isinstance(max_entries, (int, np.integer)) \
            or max_entries < 1:
        raise ValueError(f"max_entries must be a positive int; got {max_entries!r}")
    Xc, T = net._data(X, y)

    reference = get_backend("reference")
    spec = net.spec
    W, b = net.get_weights()
    params = W + (b or [])
    dW, db = net._net.gradients(Xc, T)
    grads = dW + (db or [])
    rW, rb = reference.Network(spec, W, b).gradients(Xc, T)
    ref_grads = rW + (rb or [])

    # Float64 copies of the same numbers: the float32 weights and data are exactly representable.
    spec64 = dataclasses.replace(spec, dtype=np.dtype(np.float64))
    p64 = [p.astype(np.float64) for p in params]
    X64, T64 = Xc.astype(np.float64), T.astype(np.float64)
    L = spec.n_layers
    net64 = reference.Network(spec64, p64[:L], p64[L:] if spec.bias else None)
    gW64, gb64 = net64.gradients(X64, T64)
    grads64 = gW64 + (gb64 or [])

    def loss_at(params64: list[np.ndarray]) -> float:
        net64.set_weights(params64[:L], params64[L:] if spec.bias else None)
        return net64.loss(X64, T64)

    rng = np.random.default_rng(net.seed)
    fd, probed_backend, probed_ref = [], [], []
    for k, p in enumerate(p64):
        flat_idx = np.arange(p.size) if p.size <= max_entries else \
            np.sort(rng.choice(p.size, size=max_entries, replace=False))
        estimate = np.empty(flat_idx.size)
        for j, flat in enumerate(flat_idx):
            idx = np.unravel_index(flat, p.shape)
            original = p[idx]
            p[idx] = original + eps
            up = loss_at(p64)
            p[idx] = original - eps
            down = loss_at(p64)
            p[idx] = original
            estimate[j] = (up - down) / (2 * eps)
        fd.append(estimate)
        probed_backend.append(grads[k].reshape(-1)[flat_idx])
        probed_ref.append(grads64[k].reshape(-1)[flat_idx])

    result = {
        "backend": net.backend,
        "dtype": net.dtype.name,
        "backend_vs_reference": _rel_error(grads, ref_grads),
        "backend_vs_finite_differences": _rel_error(probed_backend, fd),
        "reference_vs_finite_differences": _rel_error(probed_ref, fd),
        "n_probed": int(sum(f.size for f in fd)),
        "eps": eps,
        "rtol": rtol,
    }
    errors = [result[k] for k in ("backend_vs_reference", "backend_vs_finite_differences",
                                  "reference_vs_finite_differences")]
    result["ok"] = bool(all(e <= rtol for e in errors))
    return result
