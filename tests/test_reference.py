"""The reference backend against finite differences and hand-written optimizer formulas.

The reference backend is the oracle the native backend is checked against, so its own oracle
is the definition of the gradient: central finite differences of ``Network.loss``.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from deltaprop.backends import reference
from deltaprop.optim import SGD, Adam
from deltaprop.shuffle import epoch_order
from deltaprop.spec import HIDDEN_ACTIVATIONS, NetSpec

# (loss, output activation): every pair NetSpec accepts.
OUTPUTS = [("mse", a) for a in HIDDEN_ACTIVATIONS] + [
    ("cross_entropy", "softmax"),
    ("binary_cross_entropy", "sigmoid"),
]
DTYPES = ["float64", "float32"]


def make_net(sizes: list[int], activation: str = "tanh", loss: str = "mse",
             output_activation: str | None = None, bias: bool = True, dtype: str = "float64",
             alpha: float = 0.2, seed: int = 0) -> reference.Network:
    spec = NetSpec.build(sizes, activation=activation, loss=loss,
                         output_activation=output_activation, alpha=alpha, bias=bias, dtype=dtype)
    rng = np.random.default_rng(seed)
    weights = [rng.normal(0, 0.8, (m, n)) for m, n in zip(sizes[:-1], sizes[1:])]
    biases = [rng.normal(0, 0.5, n) for n in sizes[1:]] if bias else None
    return reference.Network(spec, weights, biases)


def make_data(net: reference.Network, rows: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    spec = net.spec
    X = rng.normal(0, 1, (rows, spec.sizes[0]))
    n_out = spec.sizes[-1]
    if spec.loss == "cross_entropy":
        T = rng.dirichlet(np.ones(n_out), rows)  # soft labels: rows of probabilities
    elif spec.loss == "binary_cross_entropy":
        T = rng.uniform(0, 1, (rows, n_out))
    else:
        T = rng.normal(0, 1, (rows, n_out))
    return X.astype(spec.dtype), T.astype(spec.dtype)


def min_abs_preactivation(net: reference.Network, X: np.ndarray) -> float:
    """The smallest |Z| over all layers: relu and leaky_relu have a kink at Z = 0."""
    weights, biases = net.get_weights()
    A, smallest = X, np.inf
    for i, W in enumerate(weights):
        Z = reference.forward_layer(A, W, None if biases is None else biases[i], "identity")
        smallest = min(smallest, float(np.abs(Z).min()))
        A = reference.ACTIVATIONS[net.spec.activations[i]](Z, net.spec.alpha)
    return smallest


def float64_twin(net: reference.Network) -> reference.Network:
    """The same network (same, exactly representable, numbers) in float64."""
    spec = NetSpec(net.spec.sizes, net.spec.activations, net.spec.loss, net.spec.alpha,
                   net.spec.bias, np.dtype("float64"))
    return reference.Network(spec, *net.get_weights())


def fd_gradients(net: reference.Network, X: np.ndarray, T: np.ndarray, eps: float = 1e-6
                 ) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    """Central differences (E(p + eps) − E(p − eps)) / 2 eps for every parameter."""
    weights, biases = net.get_weights()
    params = weights + (biases or [])
    grads = []
    for p in params:
        g = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            old = p[idx]
            p[idx] = old + eps
            net.set_weights(weights, biases)
            up = net.loss(X, T)
            p[idx] = old - eps
            net.set_weights(weights, biases)
            down = net.loss(X, T)
            p[idx] = old
            g[idx] = (up - down) / (2 * eps)
        grads.append(g)
    net.set_weights(weights, biases)
    return grads[:len(weights)], (grads[len(weights):] if biases is not None else None)


def assert_gradients_match_fd(net: reference.Network, X: np.ndarray, T: np.ndarray) -> None:
    dW, db = net.gradients(X, T)
    # float32 gradients are compared with differences taken in float64 on the same numbers.
    twin = float64_twin(net)
    fd_W, fd_b = fd_gradients(twin, X.astype(np.float64), T.astype(np.float64))
    f32 = net.spec.dtype == np.float32
    rtol = 1e-4 if f32 else 1e-6
    # Each loss is rounded to ~eps·|E|, and the central difference divides that by 2·1e-6: a
    # loss of 10 leaves ~1e-9 of noise in every difference, however small the gradient.
    fd_noise = 8 * np.finfo(np.float64).eps * max(1.0, abs(float(twin.loss(X, T)))) / 1e-6
    assert (db is None) == (fd_b is None)
    for got, want in zip(dW + (db or []), fd_W + (fd_b or [])):
        assert got.dtype == net.spec.dtype
        atol = (1e-5 if f32 else 1e-9) * max(1.0, float(np.abs(want).max())) + fd_noise
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("loss,output_activation", OUTPUTS)
@pytest.mark.parametrize("activation", HIDDEN_ACTIVATIONS)
def test_gradients_match_finite_differences(activation: str, loss: str, output_activation: str,
                                            bias: bool, dtype: str) -> None:
    net = make_net([3, 4, 5, 3], activation, loss, output_activation, bias, dtype, alpha=0.2)
    X, T = make_data(net, rows=6)
    assert min_abs_preactivation(net, X) > 1e-3  # far from any relu kink at these seeds
    assert_gradients_match_fd(net, X, T)


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 5), min_size=2, max_size=4),
    rows=st.integers(1, 5),
    activation=st.sampled_from(HIDDEN_ACTIVATIONS),
    output=st.sampled_from(OUTPUTS),
    alpha=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
)
def test_gradients_match_finite_differences_any_shape(sizes: list[int], rows: int,
                                                      activation: str, output: tuple[str, str],
                                                      alpha: float, seed: int) -> None:
    loss, output_activation = output
    net = make_net(sizes, activation, loss, output_activation, True, "float64", alpha, seed)
    X, T = make_data(net, rows, seed + 1)
    assume(min_abs_preactivation(net, X) > 1e-3)
    assert_gradients_match_fd(net, X, T)


def test_per_layer_functions_compose_to_the_network() -> None:
    net = make_net([3, 4, 2], "leaky_relu", "mse", "sigmoid", alpha=0.3)
    X, T = make_data(net, rows=5)
    (W1, W2), (b1, b2) = net.get_weights()
    A1 = reference.forward_layer(X, W1, b1, "leaky_relu", 0.3)
    A2 = reference.forward_layer(A1, W2, b2, "sigmoid", 0.3)
    np.testing.assert_allclose(A2, net.forward(X), rtol=1e-15)
    D2 = reference.output_delta(A2, T, "mse", "sigmoid", 0.3)
    D1 = reference.delta(D2, W2, A1, "leaky_relu", 0.3)
    (dW1, dW2), (db1, db2) = net.gradients(X, T)
    np.testing.assert_allclose(X.T @ D1, dW1, rtol=1e-14)
    np.testing.assert_allclose(A1.T @ D2, dW2, rtol=1e-14)
    reference.update(W2, b2, A1, D2, lr=0.5)
    reference.update(W1, None, X, D1, lr=0.5)
    (W1_ref, W2_ref), (b1_ref, b2_ref) = net.get_weights()
    np.testing.assert_allclose(W2, W2_ref - 0.5 * dW2, rtol=1e-14)
    np.testing.assert_allclose(b2, b2_ref - 0.5 * db2, rtol=1e-14)
    np.testing.assert_allclose(W1, W1_ref - 0.5 * dW1, rtol=1e-14)
    np.testing.assert_array_equal(b1, b1_ref)  # b=None: the bias is not touched


@pytest.mark.parametrize("dtype", DTYPES)
def test_activations_and_derivatives_are_stable_and_keep_dtype(dtype: str) -> None:
    finfo = np.finfo(dtype)
    Z = np.array([[-finfo.max, -1e4, -30.0, -1.0, 0.0, 1.0, 30.0, 1e4, finfo.max]], dtype=dtype)
    for name, g in reference.ACTIVATIONS.items():
        A = g(Z[:, 1:-1] if name == "softmax" else Z, 0.1)
        assert A.dtype == Z.dtype, name
        if name in reference.DERIVATIVES and name != "identity":
            assert np.isfinite(reference.DERIVATIVES[name](A, 0.1)).all(), name
    s = reference.ACTIVATIONS["sigmoid"](Z, 0.0)
    np.testing.assert_array_equal(s[0, [0, -1]], [0.0, 1.0])
    np.testing.assert_allclose(s[0, 4], 0.5)
    # (softmax subtracts the row maximum, which itself overflows for a row spanning ±finfo.max)
    p = reference.ACTIVATIONS["softmax"](Z[:, 1:-1], 0.0)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss,output_activation,z,t,expected", [
    # −log softmax of the middle logit: log-sum-exp ≈ 1e4, minus z = −1e4
    ("cross_entropy", "softmax", [1e4, -1e4, 0.0], [0.0, 1.0, 0.0], 2e4),
    ("binary_cross_entropy", "sigmoid", [1e4, -1e4, 0.0], [0.0, 1.0, 0.5],
     1e4 + 1e4 + np.log(2.0)),
    # saturated sigmoid under mse: σ(±1e4) is exactly 1 / 0
    ("mse", "sigmoid", [1e4, -1e4, 0.0], [0.0, 1.0, 0.5], 0.5 + 0.5 + 0.0),
])
def test_loss_and_gradient_are_finite_for_huge_logits(loss: str, output_activation: str,
                                                      z: list[float], t: list[float],
                                                      expected: float, dtype: str) -> None:
    spec = NetSpec.build([3, 3], loss=loss, output_activation=output_activation, dtype=dtype)
    net = reference.Network(spec, [np.eye(3)], [np.zeros(3)])
    X, T = np.array([z], dtype=dtype), np.array([t], dtype=dtype)
    np.testing.assert_allclose(net.loss(X, T), expected, rtol=1e-6)
    dW, db = net.gradients(X, T)
    assert np.isfinite(dW[0]).all() and np.isfinite(db[0]).all()
    assert np.isfinite(net.forward(X)).all()


def test_loss_is_the_mean_over_rows() -> None:
    net = make_net([2, 3, 2], "sigmoid", "cross_entropy")
    X, T = make_data(net, rows=4)
    per_row = [net.loss(X[i:i + 1], T[i:i + 1]) for i in range(4)]
    np.testing.assert_allclose(net.loss(X, T), np.mean(per_row), rtol=1e-14)


# ----------------------------------------------------------------------------------------------
# Optimizers: two steps of each against the formulas written out by hand.


def hand_step(opt: SGD | Adam, params: list[np.ndarray], grads: list[np.ndarray],
              decay: list[bool], m: list[np.ndarray], v: list[np.ndarray], t: int) -> None:
    """PyTorch's SGD/Adam, in place; ``decay[i]`` says whether params[i] is a weight."""
    for i, (p, g) in enumerate(zip(params, grads)):
        if decay[i]:
            g = g + opt.weight_decay * p
        if isinstance(opt, Adam):
            m[i] = opt.beta1 * m[i] + (1 - opt.beta1) * g
            v[i] = opt.beta2 * v[i] + (1 - opt.beta2) * g**2
            m_hat = m[i] / (1 - opt.beta1**t)
            v_hat = v[i] / (1 - opt.beta2**t)
            p -= opt.lr * m_hat / (np.sqrt(v_hat) + opt.eps)
        elif opt.momentum > 0:
            m[i] = opt.momentum * m[i] + g
            p -= opt.lr * (g + opt.momentum * m[i] if opt.nesterov else m[i])
        else:
            p -= opt.lr * g


OPTIMIZERS = [
    SGD(lr=0.3),
    SGD(lr=0.3, weight_decay=0.1),
    SGD(lr=0.3, momentum=0.9),
    SGD(lr=0.3, momentum=0.9, nesterov=True, weight_decay=0.05),
    Adam(lr=0.01),
    Adam(lr=0.01, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.1),
]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("opt", OPTIMIZERS, ids=repr)
def test_optimizer_steps_match_the_formulas(opt: SGD | Adam, bias: bool) -> None:
    net = make_net([3, 4, 2], "tanh", "mse", bias=bias)
    oracle = make_net([3, 4, 2], "tanh", "mse", bias=bias)  # only computes gradients
    weights, biases = net.get_weights()
    params = weights + (biases or [])
    decay = [True] * len(weights) + [False] * len(biases or [])
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    for t, seed in enumerate([1, 2], start=1):
        X, T = make_data(net, rows=5, seed=seed)
        oracle.set_weights(weights, biases)
        loss_before = oracle.loss(X, T)
        dW, db = oracle.gradients(X, T)
        hand_step(opt, params, dW + (db or []), decay, m, v, t)
        assert net.train_step(X, T, opt) == pytest.approx(loss_before, rel=1e-14)
    got_W, got_b = net.get_weights()
    for got, want in zip(got_W + (got_b or []), params):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    state = net.optimizer_state()
    assert state["step"] == 2
    uses_m = isinstance(opt, Adam) or opt.momentum > 0
    n_w = len(weights)
    for got, want in zip(state["m_weights"] + state["m_biases"], m):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    assert len(state["m_weights"]) == (n_w if uses_m else 0)
    assert len(state["m_biases"]) == (n_w if uses_m and bias else 0)
    assert len(state["v_weights"]) == (n_w if isinstance(opt, Adam) else 0)
    for got, want in zip(state["v_weights"] + state["v_biases"], v):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("opt", OPTIMIZERS, ids=repr)
def test_float32_training_stays_float32(opt: SGD | Adam) -> None:
    net = make_net([3, 4, 2], "relu", "cross_entropy", dtype="float32")
    X, T = make_data(net, rows=5)
    assert isinstance(net.train_step(X, T, opt), float)
    weights, biases = net.get_weights()
    state = net.optimizer_state()
    arrays = weights + biases + [a for k, v in state.items() if k != "step" for a in v]
    assert all(a.dtype == np.float32 for a in arrays)


def test_optimizer_state_round_trip_reset_and_kind_change() -> None:
    a, b = make_net([3, 4, 2]), make_net([3, 4, 2])
    X, T = make_data(a, rows=5)
    adam = Adam(lr=0.01)
    a.train_step(X, T, adam)
    b.set_weights(*a.get_weights())
    b.set_optimizer_state(a.optimizer_state())
    assert a.train_step(X, T, adam) == b.train_step(X, T, adam)
    for wa, wb in zip(a.get_weights()[0], b.get_weights()[0]):
        np.testing.assert_array_equal(wa, wb)
    # state is returned as a copy
    a.optimizer_state()["m_weights"][0][:] = 1e9
    assert np.abs(a.optimizer_state()["m_weights"][0]).max() < 1e9
    # switching to SGD starts from a fresh state: after one step the velocity is the gradient
    sgd = SGD(lr=0.1, momentum=0.9)
    dW, _ = a.gradients(X, T)
    a.train_step(X, T, sgd)
    state = a.optimizer_state()
    assert state["step"] == 1 and state["v_weights"] == []
    np.testing.assert_allclose(state["m_weights"][0], dW[0], rtol=1e-14)
    a.reset_optimizer()
    assert a.optimizer_state() == {"step": 0, "m_weights": [], "m_biases": [],
                                   "v_weights": [], "v_biases": []}


@pytest.mark.parametrize("shuffle", [True, False])
def test_fit_epoch_is_the_loop_of_train_steps(shuffle: bool) -> None:
    net = make_net([3, 5, 2], "sigmoid", "binary_cross_entropy")
    loop = make_net([3, 5, 2], "sigmoid", "binary_cross_entropy")
    X, T = make_data(net, rows=10)
    opt = Adam(lr=0.05)
    mean_loss = net.fit_epoch(X, T, opt, batch_size=4, shuffle=shuffle, seed=7, epoch=3)
    order = epoch_order(10, 7, 3) if shuffle else np.arange(10)
    losses = [loop.train_step(X[order[s:s + 4]], T[order[s:s + 4]], opt) for s in (0, 4, 8)]
    assert mean_loss == pytest.approx((4 * losses[0] + 4 * losses[1] + 2 * losses[2]) / 10,
                                      rel=1e-14)
    for got, want in zip(net.get_weights()[0] + net.get_weights()[1],
                         loop.get_weights()[0] + loop.get_weights()[1]):
        np.testing.assert_array_equal(got, want)
    assert net.optimizer_state()["step"] == 3


def test_weights_are_copied_in_and_out() -> None:
    W, b = [np.ones((2, 2))], [np.zeros(2)]
    net = reference.Network(NetSpec.build([2, 2], dtype="float64"), W, b)
    W[0][:] = 5.0
    net.get_weights()[0][0][:] = 7.0
    np.testing.assert_array_equal(net.get_weights()[0][0], np.ones((2, 2)))
    assert net.get_weights()[1] is not None
    nobias = reference.Network(NetSpec.build([2, 2], bias=False), W, None)
    assert nobias.get_weights()[1] is None and nobias.gradients(np.ones((1, 2)),
                                                                np.ones((1, 2)))[1] is None
