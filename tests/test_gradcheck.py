"""check_gradients: passes correct backends, catches wrong gradients, validates its input."""

from __future__ import annotations

import numpy as np
import pytest

import deltaprop as dp

CASES = [  # (sizes, activation, loss)
    ([4, 6, 3], "tanh", "cross_entropy"),
    ([4, 5, 2], "sigmoid", "binary_cross_entropy"),
    ([4, 7, 5, 2], "leaky_relu", "mse"),
    ([3, 1], "relu", "mse"),
]


def data(sizes: list[int], loss: str, rows: int = 9) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(rows, sizes[0]))
    n = sizes[-1]
    if loss == "cross_entropy":
        return X, rng.integers(0, n, rows)
    if loss == "binary_cross_entropy":
        return X, rng.uniform(size=(rows, n))
    return X, rng.normal(size=(rows, n))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("sizes, activation, loss", CASES)
def test_correct_gradients_pass(backend: str, dtype: str, sizes: list[int], activation: str,
                                loss: str) -> None:
    net = dp.MLP(sizes, activation=activation, loss=loss, backend=backend, dtype=dtype, seed=1)
    X, y = data(sizes, loss)
    report = dp.check_gradients(net, X, y)
    assert report["ok"], report
    assert report["n_probed"] == sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    if dtype == "float64":
        assert report["backend_vs_reference"] < 1e-12
        assert report["reference_vs_finite_differences"] < 1e-6


def test_it_samples_large_arrays(backend: str) -> None:
    net = dp.MLP([30, 20, 3], backend=backend, dtype="float64")
    X, y = data([30, 20, 3], "cross_entropy")
    report = dp.check_gradients(net, X, y, max_entries=10)
    assert report["ok"] and report["n_probed"] == 10 + 10 + 10 + 3


def test_a_wrong_gradient_is_reported_not_raised(backend: str) -> None:
    net = dp.MLP([4, 6, 3], activation="tanh", backend=backend, dtype="float64")
    X, y = data([4, 6, 3], "cross_entropy")
    right = net._net.gradients

    def wrong(X: np.ndarray, T: np.ndarray) -> tuple:
        dW, db = right(X, T)
        dW[1] = dW[1] * 1.01
        return dW, db

    net._net.gradients = wrong
    report = dp.check_gradients(net, X, y)
    assert not report["ok"]
    assert report["backend_vs_reference"] == pytest.approx(0.01 / 1.01, rel=1e-6)
    assert report["reference_vs_finite_differences"] < 1e-6


def test_the_network_is_not_modified(backend: str) -> None:
    net = dp.MLP([4, 6, 3], backend=backend)
    before = net.get_weights()[0]
    dp.check_gradients(net, *data([4, 6, 3], "cross_entropy"))
    for a, b in zip(before, net.get_weights()[0]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("call, error", [
    (lambda net, X, y: dp.check_gradients("net", X, y), TypeError),
    (lambda net, X, y: dp.check_gradients(net, X[:, :2], y), ValueError),
    (lambda net, X, y: dp.check_gradients(net, X, y + 10), ValueError),
    (lambda net, X, y: dp.check_gradients(net, X, y, eps=-1.0), ValueError),
    (lambda net, X, y: dp.check_gradients(net, X, y, rtol="1e-3"), TypeError),
    (lambda net, X, y: dp.check_gradients(net, X, y, max_entries=0), ValueError),
])
def test_bad_input_is_an_error(call, error: type) -> None:
    net = dp.MLP([4, 6, 3], backend="reference")
    X, y = data([4, 6, 3], "cross_entropy")
    with pytest.raises(error):
        call(net, X, y)
