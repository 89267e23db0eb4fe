"""deltaprop.ops: each per-layer loop against its NumPy formula, on both backends."""

from __future__ import annotations

import numpy as np
import pytest

from deltaprop import ops

RNG = np.random.default_rng(0)
A_PREV = RNG.normal(size=(7, 5))
W = RNG.normal(size=(5, 3))
B = RNG.normal(size=3)
D = RNG.normal(size=(7, 3))


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


ACTIVATIONS = {
    "identity": lambda z: z,
    "sigmoid": sigmoid,
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0),
    "leaky_relu": lambda z: np.where(z > 0, z, 0.1 * z),
    "softmax": lambda z: np.exp(z) / np.exp(z).sum(axis=1, keepdims=True),
}
DERIVATIVES = {
    "identity": lambda a: np.ones_like(a),
    "sigmoid": lambda a: a * (1 - a),
    "tanh": lambda a: 1 - a**2,
    "relu": lambda a: (a > 0) * 1.0,
    "leaky_relu": lambda a: np.where(a > 0, 1.0, 0.1),
}


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("with_bias", [True, False])
def test_forward(backend: str, activation: str, with_bias: bool) -> None:
    b = B if with_bias else None
    A = ops.forward(A_PREV, W, b, activation=activation, alpha=0.1, backend=backend)
    Z = A_PREV @ W + (B if with_bias else 0)
    np.testing.assert_allclose(A, ACTIVATIONS[activation](Z), rtol=1e-12, atol=1e-14)


def test_forward_keeps_float32(backend: str) -> None:
    A = ops.forward(A_PREV, W.astype(np.float32), B, backend=backend)
    assert A.dtype == np.float32
    np.testing.assert_allclose(A, sigmoid(A_PREV @ W + B), rtol=1e-5)
    assert ops.forward(A_PREV.tolist(), W.tolist(), None, backend=backend).dtype == np.float64


@pytest.mark.parametrize("activation", list(DERIVATIVES))
def test_output_delta_mse(backend: str, activation: str) -> None:
    A = ACTIVATIONS[activation](A_PREV[:, :3])
    T = RNG.normal(size=A.shape)
    got = ops.output_delta(A, T, loss="mse", activation=activation, alpha=0.1, backend=backend)
    expected = (A - T) * DERIVATIVES[activation](A) / A.shape[0]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("loss", ["cross_entropy", "binary_cross_entropy"])
def test_output_delta_of_fused_losses(backend: str, loss: str) -> None:
    A = ACTIVATIONS["softmax" if loss == "cross_entropy" else "sigmoid"](A_PREV[:, :3])
    labels = np.array([0, 2, 1, 1, 0, 2, 2])
    T = np.eye(3)[labels]
    got = ops.output_delta(A, T, loss=loss, backend=backend)
    np.testing.assert_allclose(got, (A - T) / 7, rtol=1e-12, atol=1e-15)
    if loss == "cross_entropy":  # class labels are targets too
        np.testing.assert_array_equal(ops.output_delta(A, labels, loss=loss, backend=backend),
                                      got)


@pytest.mark.parametrize("activation", list(DERIVATIVES))
def test_delta(backend: str, activation: str) -> None:
    A = ACTIVATIONS[activation](A_PREV)
    got = ops.delta(D, W, A, activation=activation, alpha=0.1, backend=backend)
    np.testing.assert_allclose(got, (D @ W.T) * DERIVATIVES[activation](A), rtol=1e-12,
                               atol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("with_bias", [True, False])
def test_update_in_place(backend: str, dtype: type, with_bias: bool) -> None:
    Wu, bu = W.astype(dtype), B.astype(dtype)
    W_id, b_id = Wu.__array_interface__["data"][0], bu.__array_interface__["data"][0]
    result = ops.update(Wu, bu if with_bias else None, A_PREV, D, lr=0.1, backend=backend)
    assert result is None
    assert Wu.__array_interface__["data"][0] == W_id and bu.__array_interface__["data"][0] == b_id
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(Wu, W - 0.1 * A_PREV.T @ D, rtol=rtol, atol=rtol)
    expected_b = B - 0.1 * D.sum(axis=0) if with_bias else B
    np.testing.assert_allclose(bu, expected_b, rtol=rtol, atol=rtol)


def update_refusals() -> list[tuple[str, object, object, type, str]]:
    readonly = W.copy()
    readonly.flags.writeable = False
    return [
        ("list W", W.tolist(), B.copy(), TypeError, "NumPy array"),
        ("int W", W.astype(np.int64), None, TypeError, "float32 or float64"),
        ("Fortran W", np.asfortranarray(W), B.copy(), ValueError, "C-contiguous"),
        ("strided W", np.zeros((5, 6))[:, ::2], None, ValueError, "C-contiguous"),
        ("read-only W", readonly, B.copy(), ValueError, "read-only"),
        ("mixed dtypes", W.copy(), B.astype(np.float32), TypeError, "W's dtype"),
        ("wrong b", W.copy(), np.zeros(4), ValueError, r"shape \(3,\)"),
    ]


@pytest.mark.parametrize("case", range(7))
def test_update_never_updates_a_silent_copy(backend: str, case: int) -> None:
    _, Wu, bu, error, match = update_refusals()[case]
    before = np.array(Wu, copy=True)
    with pytest.raises(error, match=match):
        ops.update(Wu, bu, A_PREV, D, lr=0.1, backend=backend)
    np.testing.assert_array_equal(np.asarray(Wu), before)


def test_update_checks_shapes_and_lr(backend: str) -> None:
    for A, Dd, lr, error in [(A_PREV[:, :4], D, 0.1, ValueError), (A_PREV, D[:5], 0.1, ValueError),
                             (A_PREV, D, -1.0, ValueError), (A_PREV, D, "0.1", TypeError),
                             (A_PREV, D, np.nan, ValueError)]:
        Wu = W.copy()
        with pytest.raises(error):
            ops.update(Wu, None, A, Dd, lr=lr, backend=backend)
        np.testing.assert_array_equal(Wu, W)
    for lr in (1e300, 1e-300):  # found by fuzzing: fine in float64, inf or 0 in float32
        Wu = W.astype(np.float32)
        with pytest.raises(ValueError, match="finite in float32"):
            ops.update(Wu, None, A_PREV, D, lr=lr, backend=backend)
        np.testing.assert_array_equal(Wu, W.astype(np.float32))
    Wu = W.copy()  # (5, 3): with 5 rows, W itself has the shape of D
    with pytest.raises(ValueError, match="overlaps"):
        ops.update(Wu, None, np.ones((5, 5)), Wu, lr=0.1, backend=backend)
    np.testing.assert_array_equal(Wu, W)


@pytest.mark.parametrize("call, error, match", [
    (lambda be: ops.forward(A_PREV, W, B, activation="gelu", backend=be), ValueError, "gelu"),
    (lambda be: ops.forward(A_PREV, W.T, B, backend=be), ValueError, r"A_prev must have shape"),
    (lambda be: ops.forward(A_PREV, W, B[:2], backend=be), ValueError, r"b must have shape"),
    (lambda be: ops.forward(A_PREV * np.nan, W, B, backend=be), ValueError, "finite"),
    (lambda be: ops.forward(A_PREV, W.astype(complex), B, backend=be), TypeError, "real"),
    (lambda be: ops.forward(A_PREV, W, B, alpha=-1.0, backend=be), ValueError, "alpha"),
    (lambda be: ops.forward(A_PREV, W, B, backend="gpu"), ValueError, "backend"),
    (lambda be: ops.delta(D, W, A_PREV, activation="softmax", backend=be), ValueError, "softmax"),
    (lambda be: ops.delta(D[:3], W, A_PREV, backend=be), ValueError, r"A_prev must have shape"),
    (lambda be: ops.delta(D.T, W, A_PREV, backend=be), ValueError, r"D must have shape"),
    (lambda be: ops.output_delta(D, D[:, :2], backend=be), ValueError, "shape"),
    (lambda be: ops.output_delta(D, D, loss="cross_entropy", activation="sigmoid", backend=be),
     ValueError, "softmax"),
    (lambda be: ops.output_delta(D, [0, 1, 5, 0, 0, 0, 0], loss="cross_entropy", backend=be),
     ValueError, r"\[0, 3\)"),
    (lambda be: ops.output_delta(D, D, loss="hinge", backend=be), ValueError, "hinge"),
])
def test_bad_arguments_are_clear_errors(backend: str, call, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        call(backend)


@pytest.mark.parametrize("op", ["forward", "output_delta", "delta", "update"])
def test_overflow_gives_infinity_without_warnings_on_both_backends(op: str) -> None:
    # Found by tests/test_fuzz.py: the reference loops let NumPy's overflow RuntimeWarnings
    # out (errors under -W error) where the native ones return inf, as the networks do.
    big, W = np.full((2, 2), 1e30, np.float32), np.full((2, 2), 1e30, np.float32)
    results = []
    for backend in ("native", "reference"):
        if op == "forward":
            out = ops.forward(big, W, None, "identity", backend=backend)
        elif op == "output_delta":
            out = ops.output_delta(np.full((2, 2), 3e38, np.float32), np.full((2, 2), -3e38),
                                   "mse", "identity", backend=backend)
        elif op == "delta":
            out = ops.delta(big, W, np.ones((2, 2), np.float32), "identity", backend=backend)
        else:
            out = W.copy()
            ops.update(out, None, big, big, lr=1.0, backend=backend)
        results.append(out)
    assert np.isinf(results[0]).all() and np.isinf(results[1]).all()
    np.testing.assert_array_equal(results[0], results[1])
