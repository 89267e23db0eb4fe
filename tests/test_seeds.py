"""The worked examples of the seed posts (shared/seeds/), recomputed and checked by finite
differences rather than copied from the posts.

Post 001 ("Understanding Backpropagation", a 1-1-1 sigmoid network with biases) and post 000
(a 2-3-1 sigmoid network without biases, mse, the old-weights note) use the same conventions
as DESIGN §1 with a single sample, so B = 1 and the mean loss is the post's E.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from deltaprop.backends import reference
from deltaprop.optim import SGD
from deltaprop.spec import NetSpec


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def central_difference(net: reference.Network, X: np.ndarray, T: np.ndarray, which: int,
                       layer: int, index: tuple[int, ...], eps: float = 1e-6) -> float:
    """∂E/∂p by central differences; ``which`` 0 perturbs a weight, 1 a bias."""
    params = net.get_weights()
    losses = []
    for step in (eps, -eps):
        perturbed = ([p.copy() for p in params[0]], [p.copy() for p in params[1] or []])
        perturbed[which][layer][index] += step
        net.set_weights(perturbed[0], perturbed[1] if params[1] is not None else None)
        losses.append(net.loss(X, T))
    net.set_weights(*params)
    return (losses[0] - losses[1]) / (2 * eps)


# ----------------------------------------------------------------------------------------------
# Post 001: input o1 = 0.2, target T = 0.7, w21 = 0.2, b2 = 0.1, w32 = 0.3, b3 = 0.1, lr 0.1.
#
# The post defines δ_k = (o_k − T)·f'(net_k) and then writes ∂E/∂w_ji = −δ_j·o_i. With its own
# δ that sign is wrong: E = ½(o − T)², so ∂E/∂w_ji = +δ_j·o_i. Its numbers (∂E/∂w32 ≈ +0.01779,
# w32 → 0.298221) therefore point uphill; finite differences give ∂E/∂w32 ≈ −0.01778 and the
# descent step w32 → 0.301778. The forward values and the δs of the post are right (to the
# four digits it rounds to).


@pytest.fixture
def post001() -> tuple[reference.Network, np.ndarray, np.ndarray]:
    spec = NetSpec.build([1, 1, 1], activation="sigmoid", loss="mse",
                         output_activation="sigmoid", bias=True, dtype="float64")
    net = reference.Network(spec, [np.array([[0.2]]), np.array([[0.3]])],
                            [np.array([0.1]), np.array([0.1])])
    return net, np.array([[0.2]]), np.array([[0.7]])


def test_post001_forward(post001: tuple[reference.Network, np.ndarray, np.ndarray]) -> None:
    net, X, T = post001
    (W1, W2), (b1, b2) = net.get_weights()
    o2 = reference.forward_layer(X, W1, b1, "sigmoid")
    o3 = reference.forward_layer(o2, W2, b2, "sigmoid")
    assert o2[0, 0] == pytest.approx(0.5349, abs=5e-5)  # σ(0.14)
    assert o3[0, 0] == pytest.approx(0.5647, abs=1e-4)  # σ(0.26048) = 0.564755: post truncates
    assert o2[0, 0] == pytest.approx(sigmoid(0.14), rel=1e-15)
    assert net.forward(X)[0, 0] == pytest.approx(0.5647549915676212, rel=1e-14)
    assert net.loss(X, T) == pytest.approx(0.5 * (0.7 - 0.5647549915676212) ** 2, rel=1e-12)


def test_post001_deltas_and_gradients(
        post001: tuple[reference.Network, np.ndarray, np.ndarray]) -> None:
    net, X, T = post001
    (W1, W2), (b1, b2) = net.get_weights()
    o2 = reference.forward_layer(X, W1, b1, "sigmoid")
    o3 = reference.forward_layer(o2, W2, b2, "sigmoid")
    d3 = reference.output_delta(o3, T, "mse", "sigmoid")
    d2 = reference.delta(d3, W2, o2, "sigmoid")
    assert d3[0, 0] == pytest.approx(-0.03324414153060283, rel=1e-12)  # post: ≈ −0.03326
    assert d2[0, 0] == pytest.approx(-0.00248113319184121, rel=1e-12)  # post: ≈ −0.002483

    expected = {  # parameter: ∂E/∂p = +δ·o (the post prints the negatives)
        (0, 1, (0, 0)): -0.01778371897963719,   # w32 = δ3·o2   (post: +0.01779)
        (1, 1, (0,)): -0.03324414153060283,     # b3  = δ3      (post: +0.03326)
        (0, 0, (0, 0)): -0.0004962266383682421,  # w21 = δ2·o1  (post: +0.000497)
        (1, 0, (0,)): -0.00248113319184121,     # b2  = δ2      (post: +0.002483)
    }
    grads = net.gradients(X, T)
    for (which, layer, index), value in expected.items():
        fd = central_difference(net, X, T, which, layer, index)
        assert fd == pytest.approx(value, rel=1e-7)
        assert grads[which][layer][index] == pytest.approx(value, rel=1e-12)


def test_post001_sgd_step_descends(
        post001: tuple[reference.Network, np.ndarray, np.ndarray]) -> None:
    net, X, T = post001
    before = net.train_step(X, T, SGD(lr=0.1))
    (W1, W2), (b1, b2) = net.get_weights()
    assert W2[0, 0] == pytest.approx(0.3017783718979637, rel=1e-12)  # post: 0.298221
    assert b2[0] == pytest.approx(0.10332441415306029, rel=1e-12)
    assert W1[0, 0] == pytest.approx(0.20004962266383683, rel=1e-12)
    assert b1[0] == pytest.approx(0.10024811331918412, rel=1e-12)
    after = net.loss(X, T)
    assert after < before
    # the post's step, the other way, raises the error
    net.set_weights([np.array([[0.2 - 0.1 * 0.0004962266383682421]]), np.array([[0.298221]])],
                    [np.array([0.1 - 0.1 * 0.00248113319184121]),
                     np.array([0.1 - 0.1 * 0.03324414153060283])])
    assert net.loss(X, T) > before


# ----------------------------------------------------------------------------------------------
# Post 000: a 2-3-1 network, sigmoid everywhere, no biases, E = ½(a1[3] − t1)². W1[i, j] is the
# post's w_ij[1] (input i -> hidden j), W2[j, 0] its w_j1[2].

X0 = np.array([[0.35, 0.9]])
T0 = np.array([[0.5]])
W1_0 = np.array([[0.1, 0.4, -0.3],
                 [0.8, -0.6, 0.2]])
W2_0 = np.array([[0.3], [-0.9], [0.5]])


@pytest.fixture
def post000() -> reference.Network:
    spec = NetSpec.build([2, 3, 1], activation="sigmoid", loss="mse",
                         output_activation="sigmoid", bias=False, dtype="float64")
    return reference.Network(spec, [W1_0, W2_0], None)


def hand_backprop() -> tuple[list[float], float, float, list[float]]:
    """The post's equations, one scalar at a time: (a[2], a1[3], δ1[3], δ[2])."""
    x1, x2 = X0[0]
    a2 = [sigmoid(W1_0[0, j] * x1 + W1_0[1, j] * x2) for j in range(3)]
    a3 = sigmoid(sum(W2_0[j, 0] * a2[j] for j in range(3)))
    d3 = (a3 - T0[0, 0]) * a3 * (1 - a3)                      # (a − t)·g'(z)
    d2 = [d3 * W2_0[j, 0] * a2[j] * (1 - a2[j]) for j in range(3)]  # δ_out·w·g'
    return a2, a3, d3, d2


def test_post000_forward_and_deltas(post000: reference.Network) -> None:
    a2, a3, d3, d2 = hand_backprop()
    A1 = reference.forward_layer(X0, W1_0, None, "sigmoid")
    A2 = reference.forward_layer(A1, W2_0, None, "sigmoid")
    np.testing.assert_allclose(A1[0], a2, rtol=1e-15)
    np.testing.assert_allclose(post000.forward(X0)[0, 0], a3, rtol=1e-15)
    D2 = reference.output_delta(A2, T0, "mse", "sigmoid")
    D1 = reference.delta(D2, W2_0, A1, "sigmoid")
    np.testing.assert_allclose(D2[0, 0], d3, rtol=1e-14)
    np.testing.assert_allclose(D1[0], d2, rtol=1e-14)


def test_post000_gradients_match_finite_differences(post000: reference.Network) -> None:
    a2, _, d3, d2 = hand_backprop()
    dW, db = post000.gradients(X0, T0)
    assert db is None
    for i in range(2):
        for j in range(3):
            want = X0[0, i] * d2[j]  # ∂E/∂w_ij[1] = x_i·δ_j[2]
            assert dW[0][i, j] == pytest.approx(want, rel=1e-12)
            assert central_difference(post000, X0, T0, 0, 0, (i, j)) == pytest.approx(want,
                                                                                       rel=1e-6)
    for j in range(3):
        want = a2[j] * d3  # ∂E/∂w_j1[2] = a_j[2]·δ1[3]
        assert dW[1][j, 0] == pytest.approx(want, rel=1e-12)
        assert central_difference(post000, X0, T0, 0, 1, (j, 0)) == pytest.approx(want, rel=1e-6)


def test_post000_train_step_uses_the_old_weights(post000: reference.Network) -> None:
    lr = 0.5
    a2, _, d3, d2 = hand_backprop()
    post000.train_step(X0, T0, SGD(lr=lr))
    W1, W2 = post000.get_weights()[0]
    W2_want = W2_0 - lr * np.array(a2)[:, None] * d3
    W1_want = W1_0 - lr * X0.T * np.array(d2)[None, :]  # δ[2] from the pre-update W2_0
    np.testing.assert_allclose(W2, W2_want, rtol=1e-14)
    np.testing.assert_allclose(W1, W1_want, rtol=1e-14)
    # and the test can tell: δ[2] taken through the already-updated W2 gives other weights
    d2_new = [d3 * W2_want[j, 0] * a2[j] * (1 - a2[j]) for j in range(3)]
    assert not np.allclose(W1, W1_0 - lr * X0.T * np.array(d2_new)[None, :], rtol=1e-6)
