"""Fuzz cases for the public API and the native module, drawn from any source of choices.

A case is plain JSON (dicts, lists, numbers, strings; NaN and infinity as Python's ``json``
writes them), so it can be sent to a worker process (``worker.py``), printed when it fails and
replayed. The same drawing code serves hypothesis (``tests/test_fuzz.py``, shrinking included)
and atheris (``fuzz_native.py``, coverage-guided): each supplies a :class:`Source`.

Bad values are drawn rarely (``Source.mostly``), so most cases pass validation and reach the
kernels with extreme but legal numbers (1e30, denormals, label edges), while every kind of bad
argument still turns up. Sizes are small or astronomically large, never in between: a
mid-sized request is a legitimate allocation of gigabytes, not a bug.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

ACTIVATIONS = ["identity", "sigmoid", "tanh", "relu", "leaky_relu"]
LOSSES = ["mse", "cross_entropy", "binary_cross_entropy"]
OWN_OUTPUT = {"mse": "identity", "cross_entropy": "softmax", "binary_cross_entropy": "sigmoid"}
# Values where arithmetic goes wrong: overflow when multiplied or squared, denormals of both
# float types (float32's 1e-45, float64's 5e-324), float16's overflow, NaN and the infinities.
SPECIAL_VALUES = [0.0, -0.0, 1.0, -1.0, 0.5, 2.0, 3.0, 1e4, -1e4, 65504.0, 1e30, -1e30, 1e38,
                  3.4e38, 1e200, -1e300, 1e-45, 1.4e-45, 5e-324, -5e-324, 2.2e-308, 1e-300,
                  math.nan, math.inf, -math.inf]
FLOAT_DTYPES = ["float32", "float64"]
OTHER_DTYPES = ["float16", "int64", "int8", "uint8", "bool", "complex128", "object", "str"]
# Not even arrays: what a careless caller passes.
ODD_OBJECTS = ["none", "string", "scalar", "ragged", "dict"]


class Source(Protocol):
    """Where a case's choices come from (hypothesis's ``data.draw`` or atheris's provider)."""

    def integer(self, low: int, high: int) -> int: ...

    def real(self) -> float: ...


def choice(src: Source, options: list) -> Any:
    return options[src.integer(0, len(options) - 1)]


def flag(src: Source) -> bool:
    return src.integer(0, 1) == 1


def mostly(src: Source, good: Any, bad: list) -> Any:
    """``good`` nine times in ten, else one of ``bad``."""
    return good if src.integer(0, 9) else choice(src, bad)


def spoil(src: Source, values: dict, bad: dict, odds: int) -> dict:
    """``values`` with, once in ``odds`` times, one of them replaced by one of its ``bad``."""
    if not src.integer(0, odds - 1):
        key = choice(src, sorted(bad))
        values[key] = choice(src, bad[key])
    return values


def value(src: Source) -> float:
    """A special value or an arbitrary float (NaN and infinities included)."""
    return choice(src, SPECIAL_VALUES) if flag(src) else src.real()


def draw_array(src: Source, shape: list[int], dtype: str, scale_hint: float = 1.0,
               labels: int | None = None) -> dict:
    """An array of ``shape`` and ``dtype``, mostly; sometimes another shape, dtype or object.

    ``labels``: draw class labels in ``[0, labels)`` (sometimes out of range or fractional).
    """
    spec: dict[str, Any] = {"shape": list(shape), "dtype": dtype, "layout": "C",
                            "seed": src.integer(0, 2**16)}
    if not src.integer(0, 11):  # one aspect wrong: shape, dtype or what kind of object
        bad = choice(src, ["shape", "dtype", "layout"])
        spec[bad] = choice(src, {
            "shape": [[], [0] + list(shape[1:]), list(shape) + [1],
                      [src.integer(0, 5) for _ in range(src.integer(0, 3))]],
            "dtype": OTHER_DTYPES,
            "layout": ["F", "strided", "list", "readonly"] + ODD_OBJECTS}[bad])
    if labels is not None:
        spec["labels"] = labels
        spec["values"] = [mostly(src, float(src.integer(0, labels - 1)),
                                 [-1.0, float(labels), 0.5, 1e30, math.nan])
                          for _ in range(src.integer(1, 3))]
    else:
        spec["scale"] = mostly(src, scale_hint, [1e-3, 1e3, 1e30, 1e-310])
        # A few special values overwrite random positions of the otherwise normal values.
        spec["pokes"] = [value(src) for _ in range(mostly(src, 0, [1, 2, 3]))]
    return spec


def draw_targets(src: Source, loss: str, rows: int, n_out: int, dtype: str) -> dict:
    if loss == "cross_entropy" and flag(src):
        return draw_array(src, [rows], "int64", labels=n_out)
    spec = draw_array(src, [rows, n_out] if n_out > 1 or flag(src) else [rows], dtype)
    if loss != "mse":  # targets in [0, 1] (rows summing to 1 for cross_entropy), mostly
        spec["unit"] = "softmax" if loss == "cross_entropy" else "sigmoid"
    return spec


def draw_size(src: Source) -> Any:
    return mostly(src, src.integer(1, 6), [0, -1, 2**40, 2**62, 2**64, 1.5, True, "3"])


def draw_optimizer(src: Source) -> dict:
    opt: dict[str, Any] = {"kind": choice(src, ["sgd", "adam"]),
                           "lr": choice(src, [0.01, 0.1, 1.0, 1e-30]), "weight_decay": 0.0}
    bad = {"kind": ["rmsprop", 3], "lr": [0.0, -1.0, math.nan, math.inf, 1e30, 1e308, "fast"],
           "weight_decay": [1e-4, -1.0, math.nan, 1e30]}
    if opt["kind"] == "adam":
        opt.update(beta1=0.9, beta2=0.999, eps=1e-8)
        bad.update(beta1=[0.0, 1.0, -0.5, math.nan], beta2=[0.0, 1.0, 2.0],
                   eps=[0.0, -1e-8, 1e-320, math.inf])
    else:
        opt.update(momentum=choice(src, [0.0, 0.9]), nesterov=flag(src))
        bad.update(momentum=[1.0, -0.1, math.nan], nesterov=["yes"])
    return spoil(src, opt, bad, 8)


def draw_network(src: Source) -> dict:
    loss = choice(src, LOSSES)
    layers = src.integer(1, 3)
    sizes = [src.integer(1, 6) for _ in range(layers + 1)]
    if loss == "binary_cross_entropy" or (loss == "cross_entropy" and sizes[-1] == 1):
        sizes[-1] = max(sizes[-1], 2) if loss == "cross_entropy" else sizes[-1]
    if not src.integer(0, 11):  # one bad size somewhere
        sizes[src.integer(0, layers)] = draw_size(src)
    net: dict[str, Any] = {
        "sizes": sizes, "activation": choice(src, ACTIVATIONS), "loss": loss,
        "output_activation": None, "bias": flag(src), "dtype": choice(src, FLOAT_DTYPES),
        "backend": choice(src, ["native", "reference"]), "seed": src.integer(0, 1000),
        "alpha": 0.01,
    }
    bad = {"activation": ["softmax", "gelu", 3, None], "loss": ["hinge", None],
           "output_activation": ACTIVATIONS + ["softmax", "swish"], "bias": ["yes", None],
           "dtype": ["float16", "int32", "complex64", "object", None], "backend": ["cuda", None],
           "seed": [-1, 2**64, 1.5, "0"], "alpha": [0.0, 2.0, -1.0, math.nan, 1e30]}
    return spoil(src, net, bad, 5)


def _shape_of(net: dict) -> tuple[list[int], str, str, int]:
    """Sizes, dtype and loss to draw data for, good ones even where the network's are bad."""
    sizes = [s if isinstance(s, int) and not isinstance(s, bool) and 0 < s <= 6 else 3
             for s in net["sizes"]]
    dtype = net["dtype"] if net["dtype"] in FLOAT_DTYPES else "float64"
    loss = net["loss"] if net["loss"] in LOSSES else "mse"
    return sizes, dtype, loss, sizes[-1]


def draw_call(src: Source, net: dict) -> dict:
    """One method call on the network ``net`` describes."""
    sizes, dtype, loss, n_out = _shape_of(net)
    rows = mostly(src, src.integer(1, 9), [300])  # 300 rows: the split-k update path
    X = draw_array(src, [rows, sizes[0]], dtype)
    method = choice(src, ["fit", "train_step", "forward", "predict", "predict_proba", "score",
                          "loss", "gradients", "set_weights", "other_backend"])
    call: dict[str, Any] = {"method": method, "X": X}
    if method in ("fit", "train_step", "score", "loss", "gradients"):
        call["y"] = draw_targets(src, loss, rows, n_out, dtype)
    if method in ("fit", "train_step"):
        call["optimizer"] = draw_optimizer(src)
    if method == "fit":
        call.update(spoil(src, {"epochs": src.integer(1, 2), "batch_size": src.integer(1, 8),
                                "shuffle": flag(src)},
                          {"epochs": [0, -1, 2.5, "2", None],
                           "batch_size": [0, -3, 2**63, 1.0, None], "shuffle": ["yes"]}, 6))
        if not src.integer(0, 3):
            call["validation"] = [draw_array(src, [2, sizes[0]], dtype),
                                  draw_targets(src, loss, 2, n_out, dtype)]
    if method == "set_weights":
        shapes = [[sizes[i], sizes[i + 1]] for i in range(len(sizes) - 1)]
        shapes = mostly(src, shapes, [[], shapes + [[1, 1]]])  # one per layer, or not
        call["weights"] = [draw_array(src, shape, dtype) for shape in shapes]
        call["biases"] = mostly(src, [draw_array(src, [s], dtype) for s in sizes[1:]], [None])
    return call


def draw_mlp_case(src: Source) -> dict:
    net = draw_network(src)
    return {"kind": "mlp", "net": net,
            "calls": [draw_call(src, net) for _ in range(src.integer(1, 3))]}


def draw_ops_case(src: Source) -> dict:
    """One of ``deltaprop.ops``'s loops, run on both backends with the same arguments."""
    op = choice(src, ["forward", "output_delta", "delta", "update"])
    dtype = choice(src, FLOAT_DTYPES)
    rows = mostly(src, src.integer(1, 7), [300])
    n_in, n_out = src.integer(1, 9), src.integer(1, 9)
    args: dict[str, Any] = {}
    activation = mostly(src, choice(src, ACTIVATIONS), ["softmax", "gelu"])
    if op == "output_delta":
        loss = choice(src, LOSSES)
        n_out = max(n_out, 2) if loss == "cross_entropy" else n_out
        args["A_L"] = draw_array(src, [rows, n_out], dtype)
        if loss != "mse":
            args["A_L"]["unit"] = OWN_OUTPUT[loss]
        args["T"] = draw_targets(src, loss, rows, n_out, dtype)
        args["loss"] = loss
        args["activation"] = mostly(src, None, ACTIVATIONS + ["softmax"])
    else:
        args["W"] = draw_array(src, [n_in, n_out], dtype)
    if op == "forward":
        args["A_prev"] = draw_array(src, [rows, n_in], dtype)
        args["b"] = mostly(src, draw_array(src, [n_out], dtype), [None])
        args["activation"] = mostly(src, activation, ["softmax"])
    if op in ("delta", "update"):
        args["D"] = draw_array(src, [rows, n_out], dtype)
        args["A_prev"] = draw_array(src, [rows, n_in], dtype)
    if op == "delta":
        args["activation"] = activation
    if op == "update":
        args["b"] = mostly(src, draw_array(src, [n_out], dtype), [None])
        args["lr"] = mostly(src, choice(src, [0.1, 1.0]), [0.0, -1.0, math.nan, 1e300, "x"])
    if op != "update":
        args["alpha"] = mostly(src, 0.01, [-1.0, math.nan])
    return {"kind": "ops", "op": op, "args": args}


def draw_load_case(src: Source) -> dict:
    """Bytes for ``deltaprop.load``: noise, or a real model file with some bytes changed."""
    if flag(src):
        return {"kind": "load", "noise": [src.integer(0, 255) for _ in range(src.integer(0, 64))]}
    edits = [[src.integer(0, 4095), src.integer(0, 255)] for _ in range(src.integer(1, 8))]
    return {"kind": "load", "model": draw_network(src) | {"backend": "native"},
            "truncate": mostly(src, None, [src.integer(0, 2000)]), "edits": edits}


def draw_case(src: Source) -> dict:
    """Any case but the native module's (``native_calls.draw_native_case``)."""
    return choice(src, [draw_mlp_case, draw_mlp_case, draw_ops_case, draw_load_case])(src)
