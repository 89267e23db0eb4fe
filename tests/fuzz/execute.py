"""Run one fuzz case (``cases.py``) and check what deltaprop promises about every call.

Every call either succeeds with results of the right shape and dtype, finite unless the
arguments' bounds (``arrays.layers_bound``) say the exact result overflows, and agreeing across
backends; or it raises one of the documented exceptions, and then the network's weights and
optimizer state are exactly what they were. (``fit`` raising ``TrainingDiverged`` keeps the
last good step instead: finite weights.) A broken promise raises :class:`Violation`; a crash
takes the process down, which the caller (a worker's parent, or libFuzzer) reports.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

import deltaprop as dp
from deltaprop.validation import as_features

from .arrays import as_float64, assert_close, build, derivative_bound, layers_bound
from .cases import OWN_OUTPUT

# What the API documents it raises (TrainingDiverged is a FloatingPointError).
DOCUMENTED = (ValueError, TypeError, MemoryError, FloatingPointError)


class Violation(AssertionError):
    """deltaprop broke a promise on this case."""


@contextlib.contextmanager
def documented_errors_only(what: str) -> Iterator[list]:
    """Record a documented exception in the yielded list; anything else is a Violation.

    NumPy warnings are errors here: the backends promise none (overflow is reported through
    results and exceptions, not RuntimeWarnings).
    """
    raised: list[BaseException] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            yield raised
        except DOCUMENTED as exc:
            raised.append(exc)
        except Exception as exc:
            raise Violation(f"{what} raised {type(exc).__name__}: {exc}") from exc


def state(net: dp.MLP) -> list[np.ndarray]:
    W, b = net.get_weights()
    s = net._net.optimizer_state()
    return W + (b or []) + [np.asarray(s["step"])] + [a for k in sorted(s) if k != "step"
                                                      for a in s[k]]


def assert_unchanged(before: list[np.ndarray], net: dp.MLP, what: str) -> None:
    after = state(net)
    same = len(before) == len(after) and all(
        a.shape == b.shape and np.array_equal(a, b) for a, b in zip(before, after))
    if not same:
        raise Violation(f"{what} raised but changed the network's weights or optimizer state")


def same_values(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal shapes and elements, NaN equal to NaN (in object arrays too)."""
    if a.shape != b.shape:
        return False
    if a.dtype.kind == "O":
        return all(x == y or (x != x and y != y) for x, y in zip(a.flat, b.flat))
    return bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))


def assert_finite(arrays: list[np.ndarray], what: str) -> None:
    if not all(np.isfinite(a).all() for a in arrays):
        raise Violation(f"{what}: parameters are not finite")


def optimizer(params: dict) -> Any:
    params = dict(params)
    return (dp.Adam if params.pop("kind") == "adam" else dp.SGD)(**params)


def check_outputs(net: dp.MLP, X: Any, A: np.ndarray, what: str) -> None:
    """Shape, dtype, range and cross-backend agreement of forward outputs."""
    spec = net.spec
    Xc = as_features(X, spec.sizes[0], spec.dtype)
    if A.shape != (Xc.shape[0], spec.sizes[-1]) or A.dtype != spec.dtype:
        raise Violation(f"{what}: got {A.dtype} {A.shape} for {Xc.shape[0]} rows")
    W, b = net.get_weights()
    overflow, tolerance = layers_bound(as_float64(Xc), W, b, list(spec.activations), spec.alpha,
                                       spec.dtype)
    if overflow:
        return  # the exact outputs may exceed the dtype: inf (and NaN after it) are correct
    if not np.isfinite(A).all():
        raise Violation(f"{what}: outputs are not finite though no layer can overflow")
    out = spec.output_activation
    low, high = {"sigmoid": (0, 1), "softmax": (0, 1), "tanh": (-1, 1)}.get(out, (-np.inf, np.inf))
    if A.min() < low or A.max() > high:
        raise Violation(f"{what}: {out} outputs outside [{low}, {high}]")
    if out == "softmax" and not np.allclose(A.sum(axis=1), 1, atol=1e-4):
        raise Violation(f"{what}: softmax rows do not sum to 1")
    other = net.to("reference" if net.backend == "native" else "native")
    assert_close(A, other.forward(Xc), tolerance, f"{what}: forward on both backends")


def call_method(net: dp.MLP, call: dict) -> Any:
    method, X = call["method"], build(call["X"])
    y = build(call.get("y"))
    if method == "fit":
        val = call.get("validation")
        return net.fit(X, y, epochs=call["epochs"], batch_size=call["batch_size"],
                       optimizer=optimizer(call["optimizer"]), shuffle=call["shuffle"],
                       validation_data=None if val is None else (build(val[0]), build(val[1])))
    if method == "train_step":
        return net.train_step(X, y, optimizer(call["optimizer"]))
    if method == "set_weights":
        W = [build(w) for w in call["weights"]]
        b = None if call["biases"] is None else [build(v) for v in call["biases"]]
        net.set_weights(W, b)
        return W, b
    if method == "other_backend":
        return net.to("reference" if net.backend == "native" else "native").forward(X)
    if method in ("forward", "predict", "predict_proba"):
        return getattr(net, method)(X)
    return getattr(net, method)(X, y)


def check_result(net: dp.MLP, call: dict, result: Any) -> None:
    method, spec = call["method"], net.spec
    X = build(call["X"])
    n_out = spec.sizes[-1]
    if method in ("forward", "other_backend"):
        check_outputs(net, X, result, method)
    elif method == "predict":
        A = net.forward(X)
        if spec.loss == "cross_entropy" and not np.array_equal(result, A.argmax(axis=1)):
            raise Violation("predict is not the argmax of forward")
        if spec.loss == "binary_cross_entropy" and not set(np.unique(result)) <= {0, 1}:
            raise Violation("binary predict gave labels other than 0 and 1")
    elif method == "predict_proba":
        check_outputs(net, X, result if result.shape[1] == n_out else result[:, 1:], method)
    elif method == "score" and spec.loss != "mse" and not 0 <= result <= 1:
        raise Violation(f"accuracy {result} outside [0, 1]")
    elif method in ("fit", "train_step"):
        assert_finite(state(net), method)
        losses = result.loss if method == "fit" else [result]
        if not all(math.isfinite(v) and v >= -1e-3 for v in losses):
            raise Violation(f"{method} returned losses {losses} but raised no TrainingDiverged")
    elif method == "gradients":
        dW, db = result
        W, b = net.get_weights()
        if [g.shape for g in dW] != [w.shape for w in W] or (db is None) != (b is None):
            raise Violation("gradients do not have the weights' shapes")
    elif method == "set_weights":
        W, b = net.get_weights()
        for got, want in zip(W + (b or []), result[0] + (result[1] or [])):
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                want = np.asarray(want).astype(spec.dtype)
            if not np.array_equal(got, want):
                raise Violation("get_weights does not return what set_weights was given")


def run_mlp(case: dict) -> None:
    with documented_errors_only("MLP(...)") as raised:
        net = dp.MLP(**case["net"])
    if raised:
        return
    repr(net)
    for call in case["calls"]:
        before = state(net)
        what = call["method"]
        with documented_errors_only(what) as raised:
            result = call_method(net, call)
        if not raised:
            check_result(net, call, result)
        elif isinstance(raised[0], dp.TrainingDiverged) and what == "fit":
            assert_finite(state(net), "fit after TrainingDiverged")
        else:
            assert_unchanged(before, net, what)


def op_bound(op: str, args: dict, dtype: Any) -> tuple[bool, float]:
    """(may overflow, tolerance) of one ``dp.ops`` loop on these (validated) arguments."""
    eps, big = float(np.finfo(dtype).eps), float(np.finfo(dtype).max) / 16
    m = {k: float(np.abs(as_float64(v)).max()) for k, v in args.items()
         if isinstance(v, np.ndarray) and v.size}
    if op == "forward":
        return layers_bound(as_float64(args["A_prev"]), [args["W"]],
                            None if args["b"] is None else [args["b"]],
                            [args["activation"]], args["alpha"], dtype)
    if op == "output_delta":
        # mse's delta has the factor g′(A_L), evaluated on its own: it may overflow alone.
        g = derivative_bound(args["activation"], m["A_L"], args["alpha"]) \
            if args["loss"] == "mse" else 1.0
        size = (m["A_L"] + m.get("T", 1.0)) * g
        return not (size < big and g < big), 8 * eps * size + 1e-30
    n = args["D"].shape[1] if op == "delta" else args["D"].shape[0]
    if op == "delta":
        # g′(A_prev) is evaluated on its own first, so it may overflow even where D is tiny.
        g = derivative_bound(args["activation"], m["A_prev"], args["alpha"])
        size = n * m["D"] * m["W"] * g
        return not (size < big and g < big), 4 * (n + 4) * eps * size + 1e-30
    step = args["lr"] * n * m["A_prev"] * m["D"] + args["lr"] * n * m["D"]
    size = m["W"] + m.get("b", 0.0) + step
    return not size < big, 4 * (n + 4) * eps * size + 1e-30


def run_ops(case: dict) -> None:
    op, spec = case["op"], case["args"]
    results, errors, inputs = [], [], []
    for backend in ("native", "reference"):
        args = {k: build(v) if isinstance(v, dict) else v for k, v in spec.items()}
        inputs.append(args)
        before = {k: v.copy() for k, v in args.items() if isinstance(v, np.ndarray)}
        with documented_errors_only(f"ops.{op} ({backend})") as raised:
            results.append(getattr(dp.ops, op)(**args, backend=backend))
        errors.append(type(raised[0]) if raised else None)
        if raised and op == "update":
            for k in ("W", "b"):
                if k in before and not same_values(before[k], args[k]):
                    raise Violation(f"ops.update ({backend}) raised but changed {k}")
    if errors[0] != errors[1]:
        raise Violation(f"ops.{op}: native raised {errors[0]}, reference {errors[1]}")
    if errors[0] is not None:
        return
    args = inputs[0]
    # dp.ops computes in the dtype of W (A_L): float32 or float64 arrays keep it, else float64.
    first = args["A_L"] if op == "output_delta" else args["W"]
    dtype = getattr(first, "dtype", np.dtype(np.float64))
    if dtype.name not in ("float32", "float64"):
        dtype = np.dtype(np.float64)
    valid = {k: (np.asarray(v, dtype=dtype) if isinstance(v, (np.ndarray, list)) else v)
             for k, v in args.items()}
    if op == "output_delta":
        valid["activation"] = valid["activation"] or OWN_OUTPUT[valid["loss"]]
        if valid["loss"] == "cross_entropy" and valid["T"].ndim == 1:
            valid.pop("T")  # class labels: the dense targets are 0 or 1
    overflow, tolerance = op_bound(op, valid, dtype)
    if op == "update":
        results = [inputs[0]["W"], inputs[1]["W"]]
        if inputs[0].get("b") is not None:
            assert_close(inputs[0]["b"], inputs[1]["b"], math.inf if overflow else tolerance,
                         "ops.update b")
    if not overflow:
        if not all(np.isfinite(r).all() for r in results):
            raise Violation(f"ops.{op}: results not finite though nothing can overflow")
        assert_close(results[0], results[1], tolerance, f"ops.{op}")


def trained_with_adam(model: dict) -> tuple[dp.MLP, dp.Adam]:
    """The network ``model`` describes after one Adam step: a file with every kind of array
    (weights, biases, moments)."""
    net, opt = dp.MLP(**model), dp.Adam()
    X = np.ones((2, net.sizes[0]))
    # Zeros are valid mse and binary_cross_entropy targets, label 0 a cross_entropy one.
    net.train_step(X, np.zeros(2, int) if net.spec.loss == "cross_entropy"
                   else np.zeros((2, net.sizes[-1])), opt)
    return net, opt


def run_load(case: dict) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.npz")
        if "noise" in case:
            data = bytes(case["noise"])
        else:
            try:
                net, opt = trained_with_adam(case["model"])
            except DOCUMENTED:  # a bad model, or one whose step overflows (alpha 1e30)
                net, opt = trained_with_adam({"sizes": [2, 3, 2]})
            dp.save(net, path, optimizer=opt)
            with open(path, "rb") as f:
                data = bytearray(f.read())
            for position, byte in case["edits"]:
                data[position % len(data)] = byte
            if case["truncate"] is not None:
                data = data[:case["truncate"]]
        with open(path, "wb") as f:
            f.write(data)
        with documented_errors_only("load") as raised:
            loaded, _ = dp.load(path, with_optimizer=True)
        if not raised:
            assert_finite(state(loaded), "load")
            with documented_errors_only("forward after load") as raised:
                loaded.forward(np.ones((1, loaded.sizes[0])))
            if raised:
                raise Violation(f"a loaded network cannot run forward: {raised[0]!r}")


def run_case(case: dict) -> None:
    """Run ``case``; raise :class:`Violation` if deltaprop breaks a promise."""
    from .native_calls import run_native  # which imports this module's checks

    {"mlp": run_mlp, "ops": run_ops, "load": run_load, "native": run_native}[case["kind"]](case)
