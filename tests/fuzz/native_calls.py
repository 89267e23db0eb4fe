"""Fuzz cases that call ``deltaprop._native`` directly, past the Python validation.

The native module is importable on its own and promises to trust nothing (DESIGN §4,
``csrc/arguments.hpp``): any argument — wrong dtype, shape, order, NaN, a huge batch size, an
object pretending to be an optimizer, a buffer overlapping the input — must give ValueError,
TypeError or MemoryError with the network unchanged, never a crash or a silent misuse of memory.
Under the AddressSanitizer build of ``.ci/fuzz``, an out-of-bounds access is a crash too.
"""

from __future__ import annotations

import math
import types
from typing import Any

import numpy as np

from deltaprop import _native

from .arrays import build
from .cases import (
    ACTIVATIONS,
    FLOAT_DTYPES,
    LOSSES,
    OWN_OUTPUT,
    Source,
    choice,
    draw_array,
    draw_optimizer,
    draw_size,
    flag,
    mostly,
    spoil,
)

NETWORKS = {"float32": _native.Network32, "float64": _native.Network64}
METHODS = ["forward", "loss", "gradients", "train_step", "fit_epoch", "gradients_into",
           "apply_gradients", "set_weights", "set_optimizer_state", "reset_optimizer",
           "epoch_order", "threads"]


def draw_native_case(src: Source) -> dict:
    dtype = choice(src, FLOAT_DTYPES)
    layers = src.integer(1, 3)
    sizes: list[Any] = [src.integer(1, 7) for _ in range(layers + 1)]
    loss = choice(src, LOSSES)
    acts = [choice(src, ACTIVATIONS) for _ in range(layers - 1)] + [OWN_OUTPUT[loss]]
    net = spoil(src, {"sizes": sizes, "activations": acts, "loss": loss, "alpha": 0.01,
                      "bias": flag(src)},
                {"sizes": [sizes[:1], sizes + [draw_size(src)], [draw_size(src)] + sizes],
                 "activations": [acts[:-1], ["softmax"] + acts, acts[:-1] + ["relu"]],
                 "loss": ["hinge"], "alpha": [-1.0, math.nan, math.inf]}, 6)
    calls = []
    for _ in range(src.integer(1, 4)):
        rows = mostly(src, src.integer(1, 9), [300])
        n_in = sizes[0] if isinstance(sizes[0], int) and sizes[0] < 8 else 3
        n_out = sizes[-1] if isinstance(sizes[-1], int) and sizes[-1] < 8 else 3
        n_params = sum(a * b + b * bool(net["bias"]) for a, b in zip(sizes, sizes[1:])
                       if isinstance(a, int) and isinstance(b, int) and a < 8 and b < 8)
        call: dict[str, Any] = {"method": choice(src, METHODS),
                                "X": draw_array(src, [rows, n_in], dtype),
                                "T": draw_array(src, [rows, n_out], dtype),
                                "optimizer": draw_optimizer(src),
                                "flat": draw_array(src, [n_params], dtype),
                                "overlap": not src.integer(0, 7)}
        if loss != "mse":
            call["T"]["unit"] = OWN_OUTPUT[loss]
        call.update(spoil(src, {"batch_size": src.integer(1, 9), "seed": src.integer(0, 2**64 - 1),
                                "epoch": src.integer(0, 2**64 - 1), "n": src.integer(0, 99),
                                "threads": src.integer(1, 3), "progress": "none"},
                          {"batch_size": [0, 2**64 - 1, -1], "seed": [-1, 2**64],
                           "n": [2**62, 2**64 - 1, -1], "threads": [0, -1],
                           "progress": ["callable", "raises", "not callable"]}, 4))
        calls.append(call)
    return {"kind": "native", "dtype": dtype, "net": net, "calls": calls}


def _progress(kind: str) -> Any:
    if kind == "callable":
        return lambda done, loss_sum: None
    if kind == "raises":
        def stop(done: int, loss_sum: float) -> None:
            raise ValueError("stop")
        return stop
    return None if kind == "none" else 42


def state_of(net: Any) -> list[np.ndarray]:
    W, b = net.get_weights()
    s = net.optimizer_state()
    return W + (b or []) + [np.asarray(s["step"])] + [a for k in sorted(s) if k != "step"
                                                      for a in s[k]]


def call_native(net: Any, dtype: str, call: dict) -> Any:
    """One call; returns what to check (a network's state must then be finite)."""
    method = call["method"]
    X, T = build(call["X"]), build(call["T"])
    opt = types.SimpleNamespace(**call["optimizer"])
    if method == "forward":
        return net.forward(X)
    if method == "loss":
        return net.loss(X, T)
    if method == "gradients":
        return net.gradients(X, T)
    if method == "train_step":
        return net.train_step(X, T, opt)
    if method == "fit_epoch":
        return net.fit_epoch(X, T, opt, call["batch_size"], True, call["seed"], call["epoch"],
                             _progress(call["progress"]))
    if method == "gradients_into":
        out = X if call["overlap"] else np.zeros(net.n_parameters, dtype)
        return net.gradients_into(X, T, out)
    if method == "apply_gradients":
        return net.apply_gradients(build(call["flat"]), opt)
    if method == "set_weights":
        W, b = net.get_weights()
        W = [build({**call["X"], "shape": list(w.shape)}) for w in W]
        return net.set_weights(W, b if call["overlap"] else None)
    if method == "set_optimizer_state":
        W, b = net.get_weights()
        moments = [build({**call["X"], "shape": list(w.shape)}) for w in W]
        return net.set_optimizer_state({"step": call["n"], "m_weights": moments,
                                        "m_biases": [] if call["overlap"] else b or [],
                                        "v_weights": [], "v_biases": []})
    if method == "reset_optimizer":
        return net.reset_optimizer()
    if method == "epoch_order":
        order = _native.epoch_order(call["n"], call["seed"], call["epoch"])
        assert sorted(order.tolist()) == list(range(call["n"])), "epoch_order is no permutation"
        return None
    previous = _native.get_num_threads()
    try:
        return _native.set_num_threads(call["threads"])
    finally:
        _native.set_num_threads(previous)


def run_native(case: dict) -> None:
    from .execute import Violation, documented_errors_only, same_values

    dtype, spec = case["dtype"], case["net"]
    with documented_errors_only("Network(...)") as raised:
        net = NETWORKS[dtype](spec["sizes"], spec["activations"], spec["loss"], spec["alpha"],
                              spec["bias"])
    if raised:
        return
    rng = np.random.default_rng(0)
    W, b = net.get_weights()
    net.set_weights([rng.normal(size=w.shape).astype(dtype) for w in W], b)
    for call in case["calls"]:
        before = state_of(net)
        what = f"_native {call['method']}"
        with documented_errors_only(what) as raised:
            result = call_native(net, dtype, call)
        after = state_of(net)
        unchanged = len(before) == len(after) and all(map(same_values, before, after))
        stepped = call["method"] in ("train_step", "fit_epoch", "apply_gradients",
                                     "set_weights", "set_optimizer_state", "reset_optimizer")
        if raised and not (call["method"] == "fit_epoch" and call["progress"] == "raises"):
            if not unchanged:
                raise Violation(f"{what} raised {raised[0]!r} but changed the network")
        elif call["method"] == "train_step" and not math.isfinite(result):
            if not unchanged:
                raise Violation(f"{what} returned {result} but changed the network")
        elif not stepped and not unchanged:
            raise Violation(f"{what} changed the network")
        if not all(np.isfinite(a).all() for a in after):
            raise Violation(f"{what} left parameters or moments that are not finite")
