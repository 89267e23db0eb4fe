"""deltaprop._native trusts nothing: every bad argument is a clear error, never a crash, and a
call that raises leaves the network exactly as it was.

The Python API validates first (tests/test_validation.py, tests/test_mlp.py); these tests call
the native module directly, as someone importing it on its own would.
"""

from __future__ import annotations

import types

import numpy as np
import pytest

import deltaprop as dp
from deltaprop import _native


def trained_network(bias: bool = True) -> _native.Network64:
    """A 3-4-2 network with non-trivial weights and momentum state."""
    net = _native.Network64([3, 4, 2], ["tanh", "identity"], "mse", 0.01, bias)
    rng = np.random.default_rng(0)
    net.set_weights([rng.normal(size=(3, 4)), rng.normal(size=(4, 2))],
                    [rng.normal(size=4), rng.normal(size=2)] if bias else None)
    net.train_step(rng.normal(size=(5, 3)), rng.normal(size=(5, 2)), dp.SGD(lr=0.1, momentum=0.9))
    return net


def snapshot(net: _native.Network64) -> list:
    W, b = net.get_weights()
    state = net.optimizer_state()
    return [W, b, state["step"]] + [state[k] for k in sorted(state) if k != "step"]


def assert_unchanged(before: list, after: list) -> None:
    assert len(before) == len(after)
    for x, y in zip(before, after):
        if isinstance(x, list):
            assert len(x) == len(y)
            for a, b in zip(x, y):
                np.testing.assert_array_equal(a, b)
        else:
            assert x == y


X = np.ones((5, 3))
T = np.zeros((5, 2))
SGD = dp.SGD(lr=0.1, momentum=0.9)
ok_biases = [np.zeros(4), np.zeros(2)]
ok_weights = [np.zeros((3, 4)), np.zeros((4, 2))]


def fake_opt(**changes):
    fields = {"kind": "sgd", "lr": 0.1, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0}
    return types.SimpleNamespace(**{**fields, **changes})


def nan_at(shape: tuple, row: int = 1) -> np.ndarray:
    a = np.ones(shape)
    a[row] = np.nan
    return a


BAD_CALLS = {
    # inputs: kind, rank, shape, empty, non-finite
    "X complex": (lambda n: n.forward(X * 1j), TypeError, "real numbers"),
    "X strings": (lambda n: n.forward(np.array([["a", "b", "c"]])), TypeError, "real numbers"),
    "X objects": (lambda n: n.forward(np.array([[1, 2, None]], dtype=object)), TypeError, "real"),
    "X 1-D": (lambda n: n.forward(np.ones(3)), ValueError, "shape"),
    "X 3-D": (lambda n: n.forward(np.ones((2, 3, 1))), ValueError, "shape"),
    "X wrong width": (lambda n: n.forward(np.ones((2, 4))), ValueError, "shape"),
    "X empty": (lambda n: n.forward(np.ones((0, 3))), ValueError, "shape"),
    "X NaN": (lambda n: n.forward(nan_at((5, 3))), ValueError, "row 1"),
    "X inf": (lambda n: n.forward(np.full((2, 3), np.inf)), ValueError, "finite"),
    "loss T shape": (lambda n: n.loss(X, np.zeros((4, 2))), ValueError, "T must have shape"),
    "loss T NaN": (lambda n: n.loss(X, nan_at((5, 2), 3)), ValueError, "row 3"),
    "gradients T complex": (lambda n: n.gradients(X, T * 1j), TypeError, "real"),
    "step X NaN": (lambda n: n.train_step(nan_at((5, 3)), T, SGD), ValueError, "finite"),
    "step T inf": (lambda n: n.train_step(X, np.full((5, 2), np.inf), SGD), ValueError, "finite"),
    "step T shape": (lambda n: n.train_step(X, np.zeros((5, 3)), SGD), ValueError, "shape"),
    # optimizers
    "opt not one": (lambda n: n.train_step(X, T, object()), TypeError, "SGD or deltaprop.Adam"),
    "opt kind": (lambda n: n.train_step(X, T, fake_opt(kind="rmsprop")), ValueError,
                 "sgd, adam"),
    "opt lr NaN": (lambda n: n.train_step(X, T, fake_opt(lr=float("nan"))), ValueError, "lr"),
    "opt lr 0": (lambda n: n.train_step(X, T, fake_opt(lr=0.0)), ValueError, "lr"),
    "opt lr str": (lambda n: n.train_step(X, T, fake_opt(lr="big")), TypeError, "lr"),
    "opt momentum 1": (lambda n: n.train_step(X, T, fake_opt(momentum=1.0)), ValueError,
                       "momentum"),
    "opt decay < 0": (lambda n: n.train_step(X, T, fake_opt(weight_decay=-1.0)), ValueError,
                      "weight_decay"),
    "opt no lr": (lambda n: n.train_step(X, T, types.SimpleNamespace(kind="sgd")), TypeError,
                  "no attribute"),
    "adam beta2 1": (lambda n: n.train_step(X, T, types.SimpleNamespace(
        kind="adam", lr=0.1, beta1=0.9, beta2=1.0, eps=1e-8, weight_decay=0.0)), ValueError,
        "beta2"),
    "adam eps 0": (lambda n: n.train_step(X, T, types.SimpleNamespace(
        kind="adam", lr=0.1, beta1=0.9, beta2=0.9, eps=0.0, weight_decay=0.0)), ValueError,
        "eps"),
    # epochs
    "epoch batch 0": (lambda n: n.fit_epoch(X, T, SGD, 0, True, 0, 0), ValueError, "batch_size"),
    "epoch batch < 0": (lambda n: n.fit_epoch(X, T, SGD, -1, True, 0, 0), TypeError, None),
    "epoch seed < 0": (lambda n: n.fit_epoch(X, T, SGD, 2, True, -1, 0), TypeError, None),
    "epoch X NaN": (lambda n: n.fit_epoch(nan_at((5, 3), 4), T, SGD, 2, True, 0, 0), ValueError,
                    "row 4"),
    "epoch progress": (lambda n: n.fit_epoch(X, T, SGD, 2, True, 0, 0, 3), TypeError,
                       "callable"),
    # parameters: nothing is copied in unless all of it is good
    "weights count": (lambda n: n.set_weights([np.zeros((3, 4))], ok_biases), ValueError,
                      "expected 2 arrays"),
    "weights shape": (lambda n: n.set_weights([np.zeros((3, 4)), np.zeros((2, 4))], ok_biases),
                      ValueError, r"weights\[1\]"),
    "weights NaN": (lambda n: n.set_weights([np.zeros((3, 4)), nan_at((4, 2))], ok_biases),
                    ValueError, "finite"),
    "weights not a list": (lambda n: n.set_weights(np.zeros((3, 4)), ok_biases), TypeError,
                           "list"),
    "good weights, bad biases": (lambda n: n.set_weights(ok_weights, [np.zeros(4), np.zeros(3)]),
                                 ValueError, r"biases\[1\]"),
    "good weights, NaN bias": (lambda n: n.set_weights(ok_weights, [np.zeros(4), nan_at((2,))]),
                               ValueError, "element 1"),
    "biases missing": (lambda n: n.set_weights(ok_weights, None), ValueError, "has biases"),
    # flat gradients
    "apply NaN": (lambda n: n.apply_gradients(nan_at((n.n_parameters,)), SGD), ValueError,
                  "finite"),
    "apply length": (lambda n: n.apply_gradients(np.zeros(3), SGD), ValueError, "shape"),
    "apply float32": (lambda n: n.apply_gradients(np.zeros(n.n_parameters, np.float32), SGD),
                      TypeError, None),
    "into read-only": (lambda n: n.gradients_into(X, T, _readonly(n.n_parameters)), ValueError,
                       "writeable"),
    "into overlaps X": (lambda n: _into_overlapping(n), ValueError, "overlaps"),
    # optimizer state: read and checked whole before anything is replaced
    "state shape": (lambda n: n.set_optimizer_state(
        {"step": 3, "m_weights": ok_weights, "m_biases": ok_biases,
         "v_weights": [np.zeros((3, 4)), np.zeros((9, 9))], "v_biases": []}), ValueError,
        r"v_weights\[1\]"),
    "state key": (lambda n: n.set_optimizer_state({"step": 3, "m_weights": []}), ValueError,
                  "lacks"),
    "state step": (lambda n: n.set_optimizer_state(
        {"step": -1, "m_weights": [], "m_biases": [], "v_weights": [], "v_biases": []}),
        ValueError, "step"),
    # Found by fuzzing: steps pybind11 could not cast were RuntimeErrors.
    "state step 2**64": (lambda n: n.set_optimizer_state(
        {"step": 2**64, "m_weights": [], "m_biases": [], "v_weights": [], "v_biases": []}),
        ValueError, "step"),
    "state step float": (lambda n: n.set_optimizer_state(
        {"step": 1.5, "m_weights": [], "m_biases": [], "v_weights": [], "v_biases": []}),
        TypeError, "step"),
    "state NaN": (lambda n: n.set_optimizer_state(
        {"step": 1, "m_weights": [np.zeros((3, 4)), nan_at((4, 2))], "m_biases": [],
         "v_weights": [], "v_biases": []}), ValueError, "finite"),
}


def _readonly(n: int) -> np.ndarray:
    a = np.zeros(n)
    a.flags.writeable = False
    return a


def _into_overlapping(net: _native.Network64) -> float:
    buffer = np.zeros(net.n_parameters + X.size)
    Xv = buffer[:X.size].reshape(X.shape)
    Xv[...] = X
    return net.gradients_into(Xv, T, buffer[:net.n_parameters])


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_calls_raise_and_leave_the_network_unchanged(case: str) -> None:
    call, error, match = BAD_CALLS[case]
    net = trained_network()
    before = snapshot(net)
    with pytest.raises(error, match=match):
        call(net)
    assert_unchanged(before, snapshot(net))


@pytest.mark.parametrize("args, error, match", [
    (([3], ["identity"], "mse", 0.0, True), ValueError, "at least"),
    (([3, 0, 2], ["relu", "identity"], "mse", 0.0, True), ValueError, "positive"),
    (([3, -1], ["identity"], "mse", 0.0, True), TypeError, None),
    (([3, 2], ["identity", "relu"], "mse", 0.0, True), ValueError, "one activation per layer"),
    (([3, 2], ["gelu"], "mse", 0.0, True), ValueError,
     "identity, sigmoid, tanh, relu, leaky_relu, softmax"),
    (([3, 2], ["identity"], "hinge", 0.0, True), ValueError,
     "mse, cross_entropy, binary_cross_entropy"),
    (([3, 4, 2], ["softmax", "softmax"], "cross_entropy", 0.0, True), ValueError, "hidden"),
    (([3, 2], ["identity"], "cross_entropy", 0.0, True), ValueError, "softmax"),
    (([3, 2], ["relu"], "binary_cross_entropy", 0.0, True), ValueError, "sigmoid"),
    (([3, 2], ["softmax"], "mse", 0.0, True), ValueError, "cross_entropy"),
    (([3, 2], ["leaky_relu"], "mse", float("nan"), True), ValueError, "alpha"),
    (([3, 2], ["leaky_relu"], "mse", -0.1, True), ValueError, "alpha"),
    (([2**33, 2**33], ["identity"], "mse", 0.0, True), ValueError, "too large"),
    (([2**62, 4], ["identity"], "mse", 0.0, True), (MemoryError, ValueError), None),
    (([2**20, 2**20, 2], ["identity", "identity"], "mse", 0.0, False), MemoryError, "memory"),
])
def test_bad_architectures_are_refused(args: tuple, error: type, match: str | None) -> None:
    with pytest.raises(error, match=match):
        _native.Network64(*args)


def test_a_batch_too_large_to_exist_is_a_memory_error() -> None:
    # A broadcast view describes 2^40 rows in a few bytes; reading them would need terabytes.
    net = _native.Network32([1, 1024, 1], ["identity", "identity"], "mse", 0.0, False)
    X = np.broadcast_to(np.ones((1, 1), np.float32), (2**40, 1))
    with pytest.raises((MemoryError, ValueError)):
        net.train_step(X, X, dp.SGD())


@pytest.mark.parametrize("call, error, match", [
    (lambda: _native.delta(np.ones((3, 4)), np.ones((5, 4)), np.ones((3, 5)), "softmax", 0.0),
     ValueError, "hidden layer"),
    (lambda: _native.output_delta(np.ones((3, 4)), np.ones((3, 4)), "mse", "softmax", 0.0),
     ValueError, "cross_entropy"),
    (lambda: _native.output_delta(np.ones((3, 4)), np.ones((3, 4)), "cross_entropy", "relu",
                                  0.0), ValueError, "softmax"),
    (lambda: _native.forward_layer(np.ones((3, 4)), np.ones((4, 0)), None, "relu", 0.0),
     ValueError, "non-empty"),
    (lambda: _native.forward_layer(np.ones((0, 4)), np.ones((4, 2)), None, "relu", 0.0),
     ValueError, "A_prev"),
    (lambda: _native.forward_layer(np.ones((3, 4)), np.ones((4, 2)), None, "gelu", 0.0),
     ValueError, "identity, sigmoid"),
    (lambda: _native.forward_layer(np.ones((3, 4)), np.ones((4, 2)), None, "relu", np.nan),
     ValueError, "alpha"),
    (lambda: _native.forward_layer(nan_at((3, 4)), np.ones((4, 2)), None, "relu", 0.0),
     ValueError, "A_prev must be finite; row 1"),
    (lambda: _native.forward_layer(np.ones((3, 4)), np.ones((4, 2)).astype(np.float32), None,
                                   "relu", 0.0), TypeError, None),
    (lambda: _native.apply_activation(np.ones(3), "relu", 0.0), ValueError, "2-D"),
    (lambda: _native.epoch_order(2**62, 0, 0), (ValueError, MemoryError), None),
    (lambda: _native.set_num_threads(0), ValueError, ">= 1"),
    (lambda: _native.select_isa("sse9"), ValueError, "generic, avx2, avx512"),
])
def test_bad_layer_calls_are_clear_errors(call, error: type, match: str | None) -> None:
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize("lr", [0.0, -1.0, np.nan, np.inf, 1e300])
def test_update_refuses_a_bad_rate_before_writing(lr: float) -> None:
    W = np.ones((4, 3), np.float32)
    with pytest.raises(ValueError, match="lr"):
        _native.update(W, None, np.ones((2, 4), np.float32), np.ones((2, 3), np.float32), lr)
    np.testing.assert_array_equal(W, 1)


@pytest.mark.parametrize("alias", ["A_prev", "D", "b"])
def test_update_refuses_inputs_that_overlap_what_it_writes(alias: str) -> None:
    buffer = np.ones(64)
    W = buffer[:16].reshape(4, 4)
    A, D, b = np.ones((4, 4)), np.ones((4, 4)), np.zeros(4)
    if alias == "A_prev":
        A = buffer[8:24].reshape(4, 4)
    elif alias == "D":
        D = buffer[:16].reshape(4, 4)
    else:
        b = buffer[12:16]
    with pytest.raises(ValueError, match="overlap"):
        _native.update(W, b, A, D, 0.1)
    np.testing.assert_array_equal(buffer, 1)


def test_inputs_of_other_real_dtypes_are_converted() -> None:
    net = trained_network()
    want = net.forward(X)
    for other in (X.astype(np.float32), X.astype(np.int8), X.astype(bool), X.tolist()):
        np.testing.assert_allclose(net.forward(other), want, rtol=1e-6)


def test_float64_beyond_float32_range_is_non_finite_not_a_warning() -> None:
    net = _native.Network32([3, 2], ["identity"], "mse", 0.0, False)
    with pytest.raises(ValueError, match="finite"):
        net.forward(np.full((2, 3), 1e300))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("row", [3, 69_999])  # in the first thread's share, and in the last's
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_large_input_is_checked_whole_on_any_thread_count(threads: int, row: int,
                                                             bad: float) -> None:
    # 70,000 × 32 floats: past 2^21 elements, from where the finiteness scan splits over threads
    X = np.ones((70_000, 32), np.float32)
    X[row, 5] = bad
    T = np.zeros((70_000, 1), np.float32)
    net = _native.Network32([32, 1], ["identity"], "mse", 0.0, True)
    before = net.get_weights()
    threads_before = _native.get_num_threads()
    _native.set_num_threads(threads)
    try:
        with pytest.raises(ValueError, match=f"X must be finite; row {row} holds"):
            net.fit_epoch(X, T, dp.SGD(lr=0.1), 64, True, 0, 0)
        with pytest.raises(ValueError, match=f"X must be finite; row {row} holds"):
            net.forward(X)
    finally:
        _native.set_num_threads(threads_before)
    for a, b in zip(before[0] + before[1], net.get_weights()[0] + net.get_weights()[1]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("where", ["A_prev", "W"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("activation", ["identity", "relu", "sigmoid", "softmax"])
@pytest.mark.parametrize("m, k, n", [(1, 5, 3), (37, 70, 45), (300, 600, 600)])
def test_forward_layer_finds_a_non_finite_input_through_its_products(
        dtype: type, where: str, bad: float, activation: str, m: int, k: int, n: int) -> None:
    # forward_layer proves its inputs finite by the products (before bias and activation, which
    # could hide a NaN: relu and sigmoid map infinities to finite values). The bad element meets
    # zeros on the other side, where an infinity makes NaN; the sizes take the unpacked path,
    # the packed one, and two threads.
    A, W = np.ones((m, k), dtype), np.ones((k, n), dtype)
    row, p = m // 2, k // 3
    if where == "A_prev":
        A[row, p] = bad
        W[p, :] = 0
    else:
        W[p, n // 2] = bad
        A[:, p] = 0
    name, bad_row = ("A_prev", row) if where == "A_prev" else ("W", p)
    with pytest.raises(ValueError, match=f"{name} must be finite; row {bad_row} holds"):
        _native.forward_layer(A, W, None, activation, 0.0)


def test_forward_layer_of_finite_inputs_whose_products_overflow_raises_nothing() -> None:
    A = np.full((4, 3), 1e30, np.float32)
    W = np.full((3, 2), 1e30, np.float32)
    assert np.isinf(_native.forward_layer(A, W, None, "identity", 0.0)).all()
    with pytest.raises(ValueError, match="b must be finite; element 1"):
        _native.forward_layer(A, W, np.array([0, np.nan], np.float32), "identity", 0.0)
