"""Divergence: training that turns to NaN or infinity stops with TrainingDiverged naming the
epoch and batch, and the network keeps the weights (and optimizer state) of the last good step.

A finite loss does not make a finite step: an overflowing gradient or learning rate can still
turn a weight into infinity. Both backends undo such a step (the native one snapshots only the
steps whose gradient bound says they might overflow). No NumPy RuntimeWarning escapes the
reference backend on the way (pytest turns warnings into errors here).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import deltaprop as dp
from deltaprop.backends import native, reference
from deltaprop.spec import NetSpec

BACKENDS = {"native": native, "reference": reference}
OPTIMIZERS = [lambda: dp.SGD(lr=0.01), lambda: dp.SGD(lr=0.01, momentum=0.9),
              lambda: dp.Adam(lr=0.01)]


def state(net) -> list[np.ndarray]:
    W, b = net.get_weights()
    s = net.optimizer_state()
    return W + (b or []) + [a for k in sorted(s) if k != "step" for a in s[k]] + [s["step"]]


def assert_same(a: list, b: list) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def assert_finite_or_undone(net, step) -> bool:
    """Run ``step()``, which returns a loss or whether the step was kept: the state after it is
    finite, and bitwise what it was before where the step was not kept. Returns whether it was."""
    before = state(net)
    result = step()
    kept = result if isinstance(result, bool) else math.isfinite(result)
    after = state(net)
    assert all(np.isfinite(a).all() for a in after)
    if not kept:
        assert_same(before, after)
    return kept


def unbiased(backend: str, sizes: list, dtype: str, W: list | None = None):
    """An identity network with mse and no biases: zero inputs keep its products, and so its
    loss, finite whatever its weights. Zero weights unless W is given."""
    spec = NetSpec.build(sizes, activation="identity", loss="mse", dtype=dtype, bias=False)
    W = W or [np.zeros((a, b), dtype) for a, b in zip(sizes[:-1], sizes[1:])]
    return BACKENDS[backend].Network(spec, W, None)


def normal_weights(dtype: str) -> list:
    rng = np.random.default_rng(0)
    return [rng.normal(0, 0.5, (2, 3)).astype(dtype), rng.normal(0, 0.5, (3, 1)).astype(dtype)]


def decay_only_steps(net, step: str, dtype: str, opt, n: int = 4) -> list[bool]:
    """``n`` steps of a 2-input, 1-output network whose only gradient is weight decay's: the online
    or batched ``train_step`` on zero inputs and targets, or ``apply_gradients`` of zeros. Each
    leaves the state finite or undoes itself; returns which were kept."""
    rows = 1 if step == "online" else 4
    X, T = np.zeros((rows, 2), dtype), np.zeros((rows, 1), dtype)
    no_gradients = np.zeros(net.n_parameters, dtype)
    if step == "apply_gradients":
        return [assert_finite_or_undone(net, lambda: net.apply_gradients(no_gradients, opt))
                for _ in range(n)]
    return [assert_finite_or_undone(net, lambda: net.train_step(X, T, opt)) for _ in range(n)]


def problem(dtype: str, seed: int = 0):
    spec = NetSpec.build([2, 3, 1], activation="identity", loss="mse", dtype=dtype)
    rng = np.random.default_rng(seed)
    W = [rng.normal(0, 0.5, (2, 3)).astype(dtype), rng.normal(0, 0.5, (3, 1)).astype(dtype)]
    b = [np.zeros(3, dtype), np.zeros(1, dtype)]
    X = rng.normal(size=(24, 2)).astype(dtype)
    T = rng.normal(size=(24, 1)).astype(dtype)
    return spec, W, b, X, T


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rows", [1, 4])  # the online path and the GEMM path
@pytest.mark.parametrize("make_opt", OPTIMIZERS)
def test_an_overflowing_gradient_under_a_finite_loss_is_undone(backend: str, rows: int,
                                                               make_opt) -> None:
    spec, W, b, X, T = problem("float32")
    net = BACKENDS[backend].Network(spec, W, b)
    opt = make_opt()
    net.train_step(X[:rows], T[:rows], opt)  # some optimizer state to keep
    before = state(net)
    # 1e20 is a finite float32; the output error (~1e20) squares to ~1e40 — finite in the
    # native loss's double accumulator, infinite in float32 — and the gradient A·D overflows.
    Xb = np.full((rows, 2), 1e20, np.float32)
    loss = net.train_step(Xb, T[:rows], opt)
    assert not math.isfinite(loss)
    assert_same(before, state(net))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rows", [1, 4])
@pytest.mark.parametrize("huge", ["activations", "deltas"])
def test_an_update_that_only_a_hidden_layer_makes_overflow_is_undone(backend: str, rows: int,
                                                                     huge: str) -> None:
    # x, the output and its delta are moderate; only a hidden layer's activations (1e37) or
    # deltas (~1e37) say the step is unsafe: its gradient, or lr times it, overflows float32.
    # The native guard takes those magnitudes from the forward and delta GEMMs' epilogues.
    spec = NetSpec.build([2, 3, 3, 1], activation="identity", loss="mse", dtype="float32")
    big, small = (1e37, 1e-37) if huge == "activations" else (1e-37, 1e37)
    W = [np.full((2, 3), big, np.float32), np.full((3, 3), small, np.float32),
         np.full((3, 1), 100.0 if huge == "activations" else 0.1, np.float32)]
    b = [np.zeros(3, np.float32), np.zeros(3, np.float32), np.zeros(1, np.float32)]
    net = BACKENDS[backend].Network(spec, W, b)
    X, T = np.full((rows, 2), 0.5, np.float32), np.zeros((rows, 1), np.float32)
    assert math.isfinite(net.loss(X, T))
    before = state(net)
    loss = net.train_step(X, T, dp.SGD(lr=1e3))
    assert math.isnan(loss)  # the loss itself was finite: the step was undone
    assert_same(before, state(net))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rows", [1, 5])
def test_an_overflowing_learning_rate_under_a_finite_loss_is_undone(backend: str,
                                                                    rows: int) -> None:
    spec, W, b, X, T = problem("float64")
    net = BACKENDS[backend].Network(spec, W, b)
    before = state(net)
    loss = net.train_step(X[:rows] * 100, T[:rows], dp.SGD(lr=1e308))
    assert math.isnan(loss)  # the loss itself was finite: the step was undone
    assert math.isfinite(net.loss(X[:rows], T[:rows]))
    assert_same(before, state(net))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batch_size", [1, 4])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("momentum", [0.5, 0.0])  # batch 1 without momentum: online_tiny.cpp
def test_fit_names_the_epoch_and_batch_and_keeps_the_last_good_step(backend: str,
                                                                     batch_size: int,
                                                                     dtype: str,
                                                                     momentum: float) -> None:
    spec, W, b, X, T = problem(dtype)
    bad_batch = 3
    X = X.copy()
    X[bad_batch * batch_size] = 1e20 if dtype == "float32" else 1e200
    y = T[:, 0]
    net = dp.MLP([2, 3, 1], activation="identity", loss="mse", dtype=dtype, backend=backend)
    net.set_weights(W, b)
    opt = dp.SGD(lr=0.01, momentum=momentum)
    net.fit(X[-8:], y[-8:], epochs=1, batch_size=batch_size, optimizer=opt, shuffle=False)
    with pytest.raises(dp.TrainingDiverged, match=rf"epoch 1, batch {bad_batch}\b") as exc:
        net.fit(X, y, epochs=3, batch_size=batch_size, optimizer=opt, shuffle=False)
    assert isinstance(exc.value, FloatingPointError)
    assert (exc.value.epoch, exc.value.batch) == (1, bad_batch)
    assert exc.value.history.epochs == 0

    # The same steps without the bad batch: identical weights and optimizer state.
    twin = dp.MLP([2, 3, 1], activation="identity", loss="mse", dtype=dtype, backend=backend)
    twin.set_weights(W, b)
    opt2 = dp.SGD(lr=0.01, momentum=momentum)
    twin.fit(X[-8:], y[-8:], epochs=1, batch_size=batch_size, optimizer=opt2, shuffle=False)
    good = bad_batch * batch_size
    twin.fit(X[:good], y[:good], epochs=1, batch_size=batch_size, optimizer=opt2, shuffle=False)
    assert_same(state(net._net), state(twin._net))
    assert all(np.isfinite(a).all() for a in state(net._net))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batch_size", [1, 4])
def test_fit_undoes_an_overflowing_update_under_a_finite_loss(backend: str,
                                                              batch_size: int) -> None:
    # In fit, batch 1 with plain SGD takes online_tiny.cpp's step, which keeps its own copy
    # of the weights for the epoch and its own snapshot for a step the guard cannot prove finite.
    spec, W, b, X, T = problem("float64")
    net = dp.MLP([2, 3, 1], activation="identity", loss="mse", dtype="float64", backend=backend)
    net.set_weights(W, b)
    before = state(net._net)
    with pytest.raises(dp.TrainingDiverged, match=r"epoch 0, batch 0\b"):
        net.fit(X * 100, T[:, 0], epochs=1, batch_size=batch_size, optimizer=dp.SGD(lr=1e308),
                shuffle=False)
    assert_same(before, state(net._net))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("memmap", [False, True])
def test_fit_undoes_an_update_that_only_the_inputs_make_overflow(backend: str, shuffle: bool,
                                                                 memmap: bool, tmp_path) -> None:
    # Z = X·W = 1 and every delta is 0.5, but the gradient X·D is 1e30 and lr·1e30 overflows
    # float32. Only |X| says the step is unsafe: the native fit_epoch bounds it by max |X| over
    # all the samples, which fit's finiteness check measured and passes on (a float64 memory
    # map is streamed in float32 chunks, each with its own bound).
    net = dp.MLP([1, 1], activation="identity", loss="mse", bias=False, dtype="float32",
                 backend=backend)
    net.set_weights([np.full((1, 1), 1e-30, np.float32)], None)
    before = state(net._net)
    X = np.full((4, 1), 1e30, np.float32)
    if memmap:
        X = np.memmap(tmp_path / "X.f64", dtype=np.float64, mode="w+", shape=X.shape)
        X[:] = 1e30
    with pytest.raises(dp.TrainingDiverged, match=r"epoch 0, batch 0\b"):
        net.fit(X, np.zeros(4, np.float32), epochs=1, batch_size=2, optimizer=dp.SGD(lr=1e10),
                shuffle=shuffle)
    assert_same(before, state(net._net))


@pytest.mark.parametrize("backend", BACKENDS)
def test_divergence_from_a_huge_rate_raises_without_warnings(backend: str) -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 5))
    y = X @ np.arange(1.0, 6.0)
    net = dp.MLP([5, 16, 1], loss="mse", backend=backend, dtype="float64")
    with pytest.raises(dp.TrainingDiverged) as exc:
        net.fit(X, y, epochs=50, batch_size=8, optimizer=dp.SGD(lr=10.0))
    assert exc.value.epoch is not None and exc.value.batch is not None
    W, b = net.get_weights()
    assert all(np.isfinite(a).all() for a in W + b)
    net.forward(X)  # still usable


def test_native_and_reference_keep_the_same_weights_after_divergence() -> None:
    spec, W, b, X, T = problem("float64")
    X = X.copy()
    X[10] = 1e200
    nets = [m.Network(spec, W, b) for m in (native, reference)]
    for net in nets:
        with pytest.raises(dp.TrainingDiverged) as exc:
            net.fit_epoch(X, T, dp.Adam(lr=0.01), 3, True, 7, 0)
    got, want = state(nets[0]), state(nets[1])
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14)
    assert exc.value.batch is not None


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rows", [1, 4])  # the online path and the GEMM path
@pytest.mark.parametrize("cause", ["loss", "update", "update with a new optimizer"])
def test_mlp_train_step_raises_naming_the_step_and_keeps_the_network(backend: str, rows: int,
                                                                     cause: str) -> None:
    # MLP.train_step behaves like fit: a diverging step is an exception, not a NaN return.
    spec, W, b, X, T = problem("float64")
    net = dp.MLP([2, 3, 1], activation="identity", loss="mse", dtype="float64", backend=backend)
    net.set_weights(W, b)
    opt = dp.SGD(lr=0.01, momentum=0.9)
    net.train_step(X[:rows], T[:rows], opt)
    net.train_step(X[:rows], T[:rows], opt)
    before = state(net._net)
    step = 3
    if cause == "loss":  # (1e200)² overflows the loss itself
        with pytest.raises(dp.TrainingDiverged, match=r"train_step, optimizer step 3\b") as exc:
            net.train_step(np.full((rows, 2), 1e200), T[:rows], opt)
    elif cause == "update":  # a finite loss whose update lr·g overflows
        opt.lr = 1e308
        with pytest.raises(dp.TrainingDiverged, match=r"train_step, optimizer step 3\b") as exc:
            net.train_step(X[:rows] * 100, T[:rows], opt)
        opt.lr = 0.01
    else:  # a new optimizer starts at step 1; the old one's momentum must survive the failure
        step = 1
        with pytest.raises(dp.TrainingDiverged, match=r"train_step, optimizer step 1\b") as exc:
            net.train_step(X[:rows] * 100, T[:rows], dp.SGD(lr=1e308, momentum=0.5))
    assert isinstance(exc.value, FloatingPointError)
    assert (exc.value.epoch, exc.value.batch, exc.value.step) == (None, None, step)
    assert_same(before, state(net._net))
    # The next step with `opt` continues its momentum exactly as if the bad call had not
    # happened: the network still holds the state `opt` made.
    twin = dp.MLP([2, 3, 1], activation="identity", loss="mse", dtype="float64",
                  backend=backend)
    twin.set_weights(W, b)
    opt2 = dp.SGD(lr=0.01, momentum=0.9)
    for _ in range(3):
        twin.train_step(X[:rows], T[:rows], opt2)
    net.train_step(X[:rows], T[:rows], opt)
    assert_same(state(twin._net), state(net._net))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("make_opt", OPTIMIZERS)
@pytest.mark.parametrize("cause", ["gradient", "rate"])
def test_an_overflowing_apply_gradients_is_undone_and_reported(backend: str, make_opt,
                                                                cause: str) -> None:
    # Found by fuzzing: apply_gradients (the step of data-parallel training) had no divergence
    # guard, so a finite gradient of 3e38 (g² overflows Adam's moment, lr·g the weights) or a
    # rate making lr·g overflow left infinite moments or weights behind.
    spec, W, b, X, T = problem("float32")
    net = BACKENDS[backend].Network(spec, W, b)
    opt = make_opt()
    flat = np.zeros(net.n_parameters, np.float32)
    net.gradients_into(X, T, flat)
    assert net.apply_gradients(flat, opt) is True
    before = state(net)
    if cause == "gradient":
        flat[2], opt.lr = 3e38, 10.0
    elif opt.kind == "adam":  # Adam's step is about lr: only a rate beyond the range is too big
        opt.lr = float(np.finfo(np.float32).max) * 0.999
        flat *= 1e30
    else:
        opt.lr, flat[2] = 3e38, 100.0
    assert net.apply_gradients(flat, opt) is False
    assert_same(before, state(net))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rows", [1, 4])  # the online path and the GEMM path
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_adam_with_a_tiny_epsilon_cannot_step_past_the_largest_value(backend: str, rows: int,
                                                                      dtype: str) -> None:
    # The native guard bounded a step by lr·g, but Adam moves a parameter by up to
    # lr/(1 - β1)·m/ε: with a gradient small enough that its second moment is stored as 0 (below
    # the smallest normal number) and ε near that number, one step moved a weight to ~0.6 of the
    # largest value and the next, unguarded, past it. Then zero inputs keep the loss finite.
    net = unbiased(backend, [2, 1], dtype)
    info = np.finfo(dtype)
    opt = dp.Adam(lr=float(np.sqrt(info.max)) / 18, eps=float(info.tiny) * 1.3)
    g = float(np.sqrt(info.tiny / 1e-3)) * 0.9  # (1 - β2)·g² is below the smallest normal
    X, T = np.ones((rows, 2), dtype), np.full((rows, 1), g, dtype)
    zeros, T0 = np.zeros((rows, 2), dtype), np.zeros((rows, 1), dtype)
    for x, t in [(X, T)] + [(zeros, T0)] * 8:
        assert_finite_or_undone(net, lambda x=x, t=t: net.train_step(x, t, opt))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rows", [1, 4])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_velocity_built_at_a_small_rate_cannot_overflow_a_weight_at_a_large_one(
        backend: str, rows: int, dtype: str) -> None:
    # The native guard bounded a step by lr·g: a velocity built up by steps at a tiny rate from
    # gradients near the guard's limit (to ~20 times that limit), then applied at the largest
    # rate the guard allowed with zero gradients, moved a weight by lr·μ·m, a tenth of the
    # largest value a step, unguarded.
    net = unbiased(backend, [2, 1], dtype)
    limit = float(np.sqrt(np.finfo(dtype).max)) / 16
    X, T = np.ones((rows, 2), dtype), np.full((rows, 1), -limit / 4, dtype)
    zeros, T0 = np.zeros((rows, 2), dtype), np.zeros((rows, 1), dtype)
    slow, fast = dp.SGD(lr=1e-30, momentum=0.99), dp.SGD(lr=limit, momentum=0.99)
    for x, t, opt in [(X, T, slow)] * 300 + [(zeros, T0, fast)] * 12:
        assert_finite_or_undone(net, lambda x=x, t=t, opt=opt: net.train_step(x, t, opt))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("step", ["online", "gemm", "apply_gradients"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("make_opt", [lambda: dp.SGD(lr=0.1, weight_decay=5.0),
                                      lambda: dp.SGD(lr=0.01, momentum=0.9, weight_decay=0.5),
                                      lambda: dp.SGD(lr=0.01, momentum=0.9, nesterov=True,
                                                     weight_decay=0.5),
                                      lambda: dp.Adam(lr=0.01, weight_decay=0.5)])
def test_weight_decay_of_a_weight_near_the_largest_value_cannot_overflow(
        backend: str, step: str, dtype: str, make_opt) -> None:
    # The native guard bounded a step by its gradient, but every optimizer adds wd·w to it: a
    # weight near the largest value (finite, so set_weights takes it) times a decay of 0.5 or 5
    # (lr·wd <= 1 allows either) overflowed a moment or the sum within two steps, with no
    # snapshot to undo it. Zero inputs keep the products and the loss finite (no biases). The
    # first step decays ordinary weights, so the native guard carries a bound measured from them,
    # and set_weights then brings the huge one.
    W = normal_weights(dtype)
    net = unbiased(backend, [2, 3, 1], dtype, W)
    opt = make_opt()
    assert math.isfinite(net.train_step(np.ones((4, 2), dtype), np.ones((4, 1), dtype), opt))
    W[0][0, 0] = np.finfo(dtype).max * 0.9
    net.set_weights(W, None)
    decay_only_steps(net, step, dtype, opt)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rows", [1, 4])  # the online path and the GEMM path
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("nesterov", [False, True])
def test_a_huge_finite_step_leaves_no_momentum_that_overflows_a_weight_later(
        backend: str, rows: int, dtype: str, nesterov: bool) -> None:
    # Found by fuzzing (.ci/fuzz, a fresh seed): a batch holding one huge input made a careful
    # step, snapshotted and found finite, so it was kept, with a velocity near the largest
    # value. The steps after it had small gradients, so the native guard kept no snapshot, and
    # the velocity carried a weight past the largest value a few steps later. Zero inputs keep
    # the products, and so the loss, finite whatever the weights (no biases).
    net = unbiased(backend, [2, 3, 1], dtype, normal_weights(dtype))
    opt = dp.SGD(lr=4.0, momentum=0.95, nesterov=nesterov)
    huge = np.full((rows, 2), np.sqrt(np.finfo(dtype).max) / 2, dtype)
    T, zeros = np.zeros((rows, 1), dtype), np.zeros((rows, 2), dtype)
    assert math.isfinite(net.train_step(huge, T, opt))  # kept: a velocity ~1/20 of the largest
    kept = [assert_finite_or_undone(net, lambda: net.train_step(zeros, T, opt)) for _ in range(20)]
    assert not all(kept)  # the velocity does take the weights to the largest value


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rows", [1, 4])  # the online path and the GEMM path
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("make_opt", [lambda: dp.SGD(lr=1.0, momentum=0.9, nesterov=True),
                                      lambda: dp.Adam(lr=1.0, eps=1e-30)])
def test_a_first_moment_set_near_the_largest_value_cannot_overflow_a_weight(
        backend: str, rows: int, dtype: str, make_opt) -> None:
    # Found by fuzzing: the native guard bounded a step by its gradient alone, which holds for
    # moments that guarded steps made. A first moment given to set_optimizer_state near the
    # largest finite value (finite, so accepted) took a weight past it two steps later, with
    # nothing kept to undo the step. Zero inputs keep every product, and so the loss, finite,
    # whatever the first layer's weights.
    spec, W, b, _, _ = problem(dtype)
    net = BACKENDS[backend].Network(spec, W, b)
    X, T = np.zeros((rows, 2), dtype), np.ones((rows, 1), dtype)
    opt = make_opt()
    net.train_step(X, T, opt)
    s = net.optimizer_state()
    s["m_weights"][0] = np.full_like(s["m_weights"][0], np.finfo(dtype).max * 0.95)
    net.set_optimizer_state(s)
    for _ in range(4):
        assert_finite_or_undone(net, lambda: net.train_step(X, T, opt))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("step", ["online", "batch", "apply_gradients"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_weight_decay_of_a_weight_a_careful_step_left_near_the_largest_value_cannot_overflow(
        backend: str, step: str, dtype: str) -> None:
    # The native guard carries its bound on max|W| (weight decay adds wd·w to every gradient)
    # from step to step, growing it by each unguarded step's largest move. A careful step's move
    # is not bounded so: the weights it keeps must be measured, or the next step's decay of a
    # weight it left near the largest value overflows unguarded. The first step measures the
    # ordinary weights; zero inputs then leave weight decay as the only gradient.
    net = unbiased(backend, [2, 3, 1], dtype, normal_weights(dtype))
    decay = dp.SGD(lr=0.1, weight_decay=5.0)
    assert math.isfinite(net.train_step(np.ones((4, 2), dtype), np.ones((4, 1), dtype), decay))
    huge = np.zeros(net.n_parameters, dtype)
    huge[0] = -np.finfo(dtype).max * 0.9
    assert net.apply_gradients(huge, dp.SGD(lr=0.5))  # careful, finite, so kept
    assert net.get_weights()[0][0][0, 0] > np.finfo(dtype).max / 4
    assert not all(decay_only_steps(net, step, dtype, decay))  # 5·w does overflow
