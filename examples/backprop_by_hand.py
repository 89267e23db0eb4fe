"""The reference posts' networks, step by step: forward values, deltas, gradients, one update.

    python examples/backprop_by_hand.py

Two small sigmoid networks from the posts in the deltaprop design notes, computed with the
per-layer ops (``dp.ops``) and every gradient confirmed by central finite differences:

* "Understanding Backpropagation" (post 001): a 1-1-1 network with biases, input 0.2,
  target 0.7, w21 = 0.2, b2 = 0.1, w32 = 0.3, b3 = 0.1, learning rate 0.1.
* "Backpropagation" (post 000): a 2-3-1 network without biases, input (0.35, 0.9),
  target 0.5.

A note on signs. Post 001 defines δ_k = (o_k − T)·f'(net_k) and then writes
∂E/∂w_ji = −δ_j·o_i. With that δ the minus sign is wrong: E = ½(o − T)², so
∂E/∂w_ji = +δ_j·o_i. The post's update (w32 → 0.298221) therefore goes uphill; the finite
differences below show the gradient's true sign, and the descent step gives w32 → 0.301778.
The post's forward values and deltas are right.

Runs in well under a second; there is nothing to make faster for the examples' fast mode.
"""

from __future__ import annotations

import textwrap

import numpy as np

import deltaprop as dp

BACKEND = "reference"  # the readable NumPy spec; "native" gives the same numbers


def finite_difference(net: dp.MLP, X: np.ndarray, T: np.ndarray, which: int, layer: int,
                      index: tuple[int, ...], eps: float = 1e-6) -> float:
    """∂E/∂p by central differences; ``which`` 0 perturbs a weight, 1 a bias."""
    W, b = net.get_weights()
    losses = []
    for step in (eps, -eps):
        params = ([w.copy() for w in W], [v.copy() for v in b] if b is not None else None)
        params[which][layer][index] += step
        net.set_weights(*params)
        losses.append(net.loss(X, T))
    net.set_weights(W, b)
    return (losses[0] - losses[1]) / (2 * eps)


def post_001() -> None:
    print("Post 001: a 1-1-1 sigmoid network with biases, mse, one sample")
    X, T = np.array([[0.2]]), np.array([[0.7]])
    W = [np.array([[0.2]]), np.array([[0.3]])]  # w21, w32
    b = [np.array([0.1]), np.array([0.1])]      # b2, b3
    net = dp.MLP([1, 1, 1], activation="sigmoid", loss="mse", output_activation="sigmoid",
                 dtype="float64", backend=BACKEND)
    net.set_weights(W, b)

    o2 = dp.ops.forward(X, W[0], b[0], "sigmoid", backend=BACKEND)
    o3 = dp.ops.forward(o2, W[1], b[1], "sigmoid", backend=BACKEND)
    print(f"  forward: o2 = σ(0.2·0.2 + 0.1) = {o2[0, 0]:.6f}, "
          f"o3 = σ(0.3·o2 + 0.1) = {o3[0, 0]:.6f}, E = {net.loss(X, T):.6f}")
    d3 = dp.ops.output_delta(o3, T, loss="mse", activation="sigmoid", backend=BACKEND)
    d2 = dp.ops.delta(d3, W[1], o2, activation="sigmoid", backend=BACKEND)
    print(f"  deltas:  δ3 = (o3 − T)·o3(1 − o3) = {d3[0, 0]:+.6f}, "
          f"δ2 = δ3·w32·o2(1 − o2) = {d2[0, 0]:+.6f}")

    dW, db = net.gradients(X, T)
    rows = [("w32", "δ3·o2", 0, 1, (0, 0), dW[1][0, 0]), ("b3", "δ3", 1, 1, (0,), db[1][0]),
            ("w21", "δ2·o1", 0, 0, (0, 0), dW[0][0, 0]), ("b2", "δ2", 1, 0, (0,), db[0][0])]
    print("  gradients ∂E/∂p = +δ·o (the post prints these with the opposite sign):")
    for name, formula, which, layer, index, grad in rows:
        fd = finite_difference(net, X, T, which, layer, index)
        print(f"    ∂E/∂{name:3} = {formula:5} = {grad:+.8f}   finite differences {fd:+.8f}")
        assert abs(grad - fd) < 1e-8, (name, grad, fd)

    before = net.loss(X, T)
    dp.ops.update(W[1], b[1], o2, d3, lr=0.1, backend=BACKEND)  # in place, with the old W[1]
    dp.ops.update(W[0], b[0], X, d2, lr=0.1, backend=BACKEND)   # d2 was computed before it
    net.set_weights(W, b)
    after = net.loss(X, T)
    print(f"  one SGD step (lr 0.1): w32 = {W[1][0, 0]:.6f} (post: 0.298221, uphill), "
          f"w21 = {W[0][0, 0]:.8f}")
    print(f"  E: {before:.8f} -> {after:.8f} (descends)\n")
    assert after < before and abs(W[1][0, 0] - 0.3017783718979637) < 1e-12


def post_000() -> None:
    print("Post 000: a 2-3-1 sigmoid network without biases, mse, one sample")
    X, T = np.array([[0.35, 0.9]]), np.array([[0.5]])
    W1 = np.array([[0.1, 0.4, -0.3], [0.8, -0.6, 0.2]])  # W1[i, j] = w_ij[1]
    W2 = np.array([[0.3], [-0.9], [0.5]])                 # W2[j, 0] = w_j1[2]
    net = dp.MLP([2, 3, 1], activation="sigmoid", loss="mse", bias=False,
                 output_activation="sigmoid", dtype="float64", backend=BACKEND)
    net.set_weights([W1, W2])

    a2 = dp.ops.forward(X, W1, None, "sigmoid", backend=BACKEND)
    a3 = dp.ops.forward(a2, W2, None, "sigmoid", backend=BACKEND)
    print(f"  forward: a[2] = {np.round(a2[0], 6)}, a1[3] = {a3[0, 0]:.6f}, "
          f"E = {net.loss(X, T):.6f}")
    d3 = dp.ops.output_delta(a3, T, loss="mse", activation="sigmoid", backend=BACKEND)
    d2 = dp.ops.delta(d3, W2, a2, activation="sigmoid", backend=BACKEND)
    print(f"  deltas:  δ1[3] = {d3[0, 0]:+.6f}, δ[2] = {np.round(d2[0], 6)}")

    dW, _ = net.gradients(X, T)
    worst = 0.0
    for layer, (grad, inputs, deltas) in enumerate([(dW[0], X, d2), (dW[1], a2, d3)]):
        by_hand = inputs.T @ deltas  # ∂E/∂w_ij = a_i·δ_j
        for index in np.ndindex(grad.shape):
            fd = finite_difference(net, X, T, 0, layer, index)
            worst = max(worst, abs(grad[index] - fd), abs(by_hand[index] - fd))
        print(f"  ∂E/∂W{layer + 1}[i, j] = a_i·δ_j:")
        print(textwrap.indent(np.array2string(grad, precision=8), "    "))
    print(f"  largest |gradient − finite difference| over all 9 weights: {worst:.1e}")
    assert worst < 1e-9

    # The update of W1 needs δ[2] from the old W2: an implementation that updates W2 first and
    # then backpropagates through it gets other numbers (the post's closing note).
    lr = 0.5
    net.train_step(X, T, dp.SGD(lr=lr))
    W1_new, W2_new = net.get_weights()[0]
    wrong = X.T @ dp.ops.delta(d3, W2_new, a2, activation="sigmoid", backend=BACKEND)
    print(f"  after one step (lr {lr}): W1 moved by up to {np.abs(W1_new - W1).max():.2e}; "
          f"using the updated W2 for δ[2] would differ by {np.abs(lr * (wrong - dW[0])).max():.2e}")


if __name__ == "__main__":
    post_001()
    post_000()
