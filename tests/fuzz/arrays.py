"""Build the arguments a fuzz case describes (see ``cases.draw_array``) and bound their math.

The bounds say, from the arguments alone and in float64, how large a layer's values can get
and how far two correct implementations may differ after rounding. They decide when an
overflow to infinity is legitimate (the exact result exceeds the dtype) and how close the
native and the reference backend must agree otherwise.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

ODD_OBJECTS = {"none": None, "string": "abc", "scalar": 1.5, "ragged": [[1.0, 2.0], [3.0]],
               "dict": {"a": 1}}


def _values(spec: dict) -> np.ndarray:
    shape = tuple(spec["shape"])
    rng = np.random.default_rng(spec["seed"])
    if "labels" in spec:
        return np.resize(np.array(spec["values"], dtype=np.float64), shape)
    a = np.asarray(rng.normal(size=shape) * spec["scale"], dtype=np.float64)
    if spec.get("unit") == "sigmoid":
        a = 1 / (1 + np.exp(-np.clip(a, -50, 50)))
    elif spec.get("unit") == "softmax" and a.ndim == 2 and a.size:
        e = np.exp(a - a.max(axis=1, keepdims=True))
        a = e / e.sum(axis=1, keepdims=True)
    if a.size and spec["pokes"]:
        flat = a.reshape(-1)
        for v in spec["pokes"]:
            flat[rng.integers(flat.size)] = v
    return a


def build(spec: dict | None) -> Any:
    """The object an array spec describes: an array of its dtype and layout, or an odd object."""
    if spec is None:
        return None
    if spec["layout"] in ODD_OBJECTS:
        return ODD_OBJECTS[spec["layout"]]
    a = _values(spec)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # NaN cast to int, float16 overflow: wanted here
        dtype = spec["dtype"]
        if dtype == "complex128":
            a = a + 0.5j
        elif dtype == "bool":
            a = a != 0
        else:
            a = a.astype(dtype)
    layout = spec["layout"]
    if layout == "F":
        a = np.asfortranarray(a)
    elif layout == "strided" and a.ndim:
        wide = np.repeat(a, 2, axis=-1)
        a = wide[..., ::2]
        assert a.ndim < 2 or not a.flags.c_contiguous or a.shape[-1] <= 1
    elif layout == "list":
        return a.tolist()
    elif layout == "readonly":
        a.flags.writeable = False
    return a


def finfo_max(dtype: Any) -> float:
    return float(np.finfo(dtype).max)


def as_float64(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def derivative_bound(activation: str, a: float, alpha: float) -> float:
    """max |g'| over outputs of magnitude up to ``a`` (derivatives are written in the output)."""
    return {"identity": 1.0, "relu": 1.0, "leaky_relu": max(1.0, alpha),
            "sigmoid": a * (1 + a), "tanh": 1 + a * a}.get(activation, 1.0)


def layers_bound(X: np.ndarray, weights: list, biases: list | None, activations: list[str],
                 alpha: float, dtype: Any) -> tuple[bool, float]:
    """(whether some layer may overflow ``dtype``, max |difference| allowed between backends).

    Rounding: a dot product of n terms is off by at most about n·eps·Σ|x||w| (the sum order
    is each backend's own), each layer passes earlier errors on times n·max|W|, and sigmoid,
    tanh and softmax are 1-Lipschitz, with a few ulps of their own.
    """
    eps = float(np.finfo(dtype).eps)
    big = finfo_max(dtype) / 16
    a_max, err = float(np.abs(X).max()), 0.0
    overflow = False
    for i, W in enumerate(weights):
        W = as_float64(W)
        n = W.shape[0]
        w_max = float(np.abs(W).max())
        z_max = n * a_max * w_max + (float(np.abs(biases[i]).max()) if biases else 0.0)
        overflow |= not z_max < big
        err = n * (w_max * err) + (n + 2) * eps * z_max  # w_max·0, never n·w_max = inf times 0
        if activations[i] in ("sigmoid", "tanh", "softmax"):
            a_max, err = 1.0, 2 * err + 16 * eps
        else:
            a_max, err = z_max * max(1.0, alpha), (err + eps * z_max) * max(1.0, alpha)
    return overflow, 4 * err + 1e-30


def assert_close(got: np.ndarray, want: np.ndarray, tolerance: float, what: str) -> None:
    got, want = as_float64(got), as_float64(want)
    assert got.shape == want.shape, f"{what}: shapes {got.shape} and {want.shape}"
    if tolerance == math.inf:  # the bounds allow overflow: inf - inf would be a NaN difference
        return
    diff = float(np.abs(got - want).max()) if got.size else 0.0
    assert diff <= tolerance, f"{what}: backends differ by {diff:.3g} > {tolerance:.3g}"
