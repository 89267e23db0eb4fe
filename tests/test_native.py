"""The native backend against the reference backend, on every ISA this CPU runs.

The reference backend (NumPy) is the executable spec; every native result must match it to
rounding: ~1e-12 of the array's largest magnitude in float64, ~1e-5 in float32. Weights are drawn
from N(0, 1/fan_in) and learning rates are modest, so a few steps cannot amplify the rounding
differences of two summation orders into a visible divergence.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import threading
import time
import tracemalloc
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import deltaprop as dp
from deltaprop import _native, shuffle
from deltaprop.backends import native, reference
from deltaprop.spec import HIDDEN_ACTIVATIONS, NetSpec

ISAS = list(_native.cpu_info()["isas_supported"])
DTYPES = [np.float32, np.float64]
# (loss, output activation): every pairing NetSpec accepts.
OUTPUTS = [("mse", a) for a in HIDDEN_ACTIVATIONS] + [
    ("cross_entropy", "softmax"), ("binary_cross_entropy", "sigmoid")]
OPTIMIZERS = {
    "sgd": lambda: dp.SGD(lr=0.1),
    "momentum": lambda: dp.SGD(lr=0.1, momentum=0.9),
    "nesterov": lambda: dp.SGD(lr=0.1, momentum=0.9, nesterov=True),
    "weight_decay": lambda: dp.SGD(lr=0.1, momentum=0.5, weight_decay=0.01),
    "adam": lambda: dp.Adam(lr=0.01),
    "adam_weight_decay": lambda: dp.Adam(lr=0.01, weight_decay=0.01),
}


def rel_tol(dtype: type) -> float:
    return 1e-5 if np.dtype(dtype) == np.float32 else 1e-12


def assert_close(got: np.ndarray, want: np.ndarray, rel: float, what: str = "",
                 magnitude: np.ndarray | None = None) -> None:
    """|got − want| <= rel · max|want| elementwise (the array's scale, not each element's), or
    rel · max(magnitude) where that is larger: the size of the terms a result was summed from."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, what
    assert got.dtype == want.dtype, what
    scale = max(float(np.abs(want).max(initial=0.0)), 1e-30)
    if magnitude is not None:
        scale = max(scale, float(np.max(magnitude, initial=0.0)))
    err = float(np.abs(got.astype(np.float64) - want.astype(np.float64)).max(initial=0.0))
    assert err <= rel * scale, f"{what}: max error {err:.3g} > {rel:g} · {scale:.3g}"


def assert_all_close(got: list, want: list, rel: float, what: str,
                     magnitudes: list | None = None) -> None:
    assert len(got) == len(want), what
    for i, (g, w) in enumerate(zip(got, want)):
        assert_close(g, w, rel, f"{what}[{i}]", magnitudes[i] if magnitudes else None)


def gradient_magnitudes(spec: NetSpec, W: list, b: list | None, X: np.ndarray,
                        T: np.ndarray) -> list[np.ndarray]:
    """The size of the terms each gradient is summed from, weights' then biases' as gradients()
    returns them: the reference's backward pass in float64 with |D_L|, |W| and |g'| in place of
    D_L, W and g'. Where terms cancel (rows of deltas of ±10 summing to a bias gradient of 0.1),
    two summation orders agree to rounding of these, not of the result."""
    W64 = [np.asarray(w, np.float64) for w in W]
    A = [np.asarray(X, np.float64)]
    for i, w in enumerate(W64):
        Z = A[-1] @ w if b is None else A[-1] @ w + np.asarray(b[i], np.float64)
        A.append(reference.ACTIVATIONS[spec.activations[i]](Z, spec.alpha))
    D = np.abs(reference.output_delta(A[-1], np.asarray(T, np.float64), spec.loss,
                                        spec.output_activation, spec.alpha))
    dW: list[np.ndarray] = []
    db: list[np.ndarray] = []
    for i in reversed(range(len(W64))):
        dW.insert(0, np.abs(A[i]).T @ D)
        db.insert(0, D.sum(axis=0))
        if i > 0:
            D = (D @ np.abs(W64[i]).T) * np.abs(
                reference.DERIVATIVES[spec.activations[i - 1]](A[i], spec.alpha))
    return dW + (db if b is not None else [])


@contextlib.contextmanager
def using_isa(name: str) -> Iterator[None]:
    before = _native.cpu_info()["isa"]
    _native.select_isa(name)
    try:
        yield
    finally:
        _native.select_isa(before)


@pytest.fixture(params=ISAS)
def isa(request: pytest.FixtureRequest) -> Iterator[str]:
    """Runs the test once per ISA the CPU supports, restoring the original ISA afterwards."""
    with using_isa(request.param):
        yield request.param


@pytest.fixture
def restore_threads() -> Iterator[None]:
    before = _native.get_num_threads()
    yield
    _native.set_num_threads(before)


# -- problems ---------------------------------------------------------------------------------

def make_problem(sizes: list[int], hidden: str, output: tuple[str, str], dtype: type,
                 bias: bool, rows: int, seed: int = 0
                 ) -> tuple[NetSpec, list, list | None, np.ndarray, np.ndarray]:
    """A spec, N(0, 1/fan_in) weights, small biases, inputs and targets valid for the loss."""
    loss, out_act = output
    spec = NetSpec.build(sizes, activation=hidden, loss=loss, output_activation=out_act,
                         alpha=0.1, bias=bias, dtype=dtype)
    rng = np.random.default_rng(seed)
    W = [rng.normal(0, 1 / np.sqrt(m), (m, n)).astype(dtype) for m, n in zip(sizes, sizes[1:])]
    b = [rng.normal(0, 0.1, n).astype(dtype) for n in sizes[1:]] if bias else None
    X = rng.normal(size=(rows, sizes[0])).astype(dtype)
    n_out = sizes[-1]
    if loss == "cross_entropy":
        T = np.eye(n_out, dtype=dtype)[rng.integers(0, n_out, rows)]
    elif loss == "binary_cross_entropy":
        T = rng.uniform(0, 1, (rows, n_out)).astype(dtype)
    else:
        T = rng.normal(size=(rows, n_out)).astype(dtype)
    return spec, W, b, X, T


def both(spec: NetSpec, W: list, b: list | None) -> tuple[native.Network, reference.Network]:
    return native.Network(spec, W, b), reference.Network(spec, W, b)


def params(net: native.Network | reference.Network) -> list[np.ndarray]:
    W, b = net.get_weights()
    return W + (b or [])


def assert_same_state(nat: native.Network, ref: reference.Network, rel: float,
                      what: str) -> None:
    assert_all_close(params(nat), params(ref), rel, what + " parameters")
    s_nat, s_ref = nat.optimizer_state(), ref.optimizer_state()
    assert s_nat["step"] == s_ref["step"]
    for key in ("m_weights", "m_biases", "v_weights", "v_biases"):
        assert_all_close(s_nat[key], s_ref[key], rel, f"{what} {key}")


GRID = list(itertools.product(HIDDEN_ACTIVATIONS, OUTPUTS, DTYPES, [True, False]))
GRID_IDS = [f"{h}-{lo}-{oa}-{np.dtype(d).name}-{'bias' if b else 'nobias'}"
            for h, (lo, oa), d, b in GRID]


# -- whole networks: every activation × loss × dtype × bias, on every ISA --------------------

@pytest.mark.parametrize("hidden, output, dtype, bias", GRID, ids=GRID_IDS)
def test_forward_loss_and_gradients(isa: str, hidden: str, output: tuple[str, str],
                                    dtype: type, bias: bool) -> None:
    spec, W, b, X, T = make_problem([7, 9, 6, 3], hidden, output, dtype, bias, rows=13)
    nat, ref = both(spec, W, b)
    rel = rel_tol(dtype)
    assert_close(nat.forward(X), ref.forward(X), rel, "forward")
    assert nat.loss(X, T) == pytest.approx(ref.loss(X, T), rel=rel, abs=rel)
    (dW_n, db_n), (dW_r, db_r) = nat.gradients(X, T), ref.gradients(X, T)
    assert_all_close(dW_n, dW_r, rel, "dW")
    assert (db_n is None) == (db_r is None) == (not bias)
    assert_all_close(db_n or [], db_r or [], rel, "db")
    flat_n = np.empty(nat.n_parameters, dtype)
    flat_r = np.empty(ref.n_parameters, dtype)
    assert nat.gradients_into(X, T, flat_n) == pytest.approx(ref.gradients_into(X, T, flat_r),
                                                            rel=rel, abs=rel)
    assert_close(flat_n, flat_r, rel, "flat gradients")


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_rows_in_lanes_equal_rows_one_at_a_time(isa: str, dtype: type) -> None:
    """The output pass takes softmax and cross-entropy eight rows at a time, one row per vector
    lane (output.cpp), and the rows that do not fill a vector one at a time: both must give
    every row the same bits. A row alone and the batch take different GEMM paths (unpacked and
    packed), which sum in different orders; inputs and weights in eighths and quarters make
    every logit exact either way, so the logits' bits are the same and the output pass's differ
    only if the lanes do."""
    rows = 21
    rng = np.random.default_rng(3)
    spec = NetSpec.build([7, 10], loss="cross_entropy", output_activation="softmax", bias=True,
                         dtype=dtype)
    X = (rng.integers(-8, 9, (rows, 7)) / 4).astype(dtype)
    W = (rng.integers(-8, 9, (7, 10)) / 8).astype(dtype)
    b = (rng.integers(-8, 9, 10) / 8).astype(dtype)
    T = np.eye(10, dtype=dtype)[rng.integers(0, 10, rows)]
    X[4] = X[3]  # ties between rows change nothing; ties within a row:
    W[:, 5] = W[:, 2]
    b[5] = b[2]
    nat = native.Network(spec, [W], [b])
    one_at_a_time = [nat.forward(X[i:i + 1]) for i in range(rows)]
    np.testing.assert_array_equal(nat.forward(X), np.concatenate(one_at_a_time))
    total = 0.0
    for i in range(rows):  # output_row's losses, added in row order as the pass adds them
        total += nat.loss(X[i:i + 1], T[i:i + 1])
    assert nat.loss(X, T) == total / rows


# A row alone runs the unpacked loops, a batch the packed kernel; the unpacked loops sum each
# element as the kernel does (in depth blocks of 256 from 289 terms on: 784 = 256 + 256 + 272),
# so a sample's prediction does not depend on the batch it comes in (scikit-learn's
# check_methods_subset_invariance asks the same). Widths of 37 and 10 end in columns short of a
# vector; a layer of one unit is unpacked in the batch too.
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes", [[784, 37, 10], [300, 64, 3], [20, 33, 1], [289, 16, 8]])
def test_a_row_predicted_alone_has_the_bits_it_has_in_a_batch(isa: str, dtype: type,
                                                              sizes: list[int]) -> None:
    spec, W, b, X, _ = make_problem(sizes, "tanh", ("mse", "identity"), dtype, True, rows=40)
    nat = native.Network(spec, W, b)
    batch = nat.forward(X)
    for i in (0, 17, 39):
        np.testing.assert_array_equal(nat.forward(X[i:i + 1]), batch[i:i + 1])


@pytest.mark.parametrize("lanes", [False, True])
def test_cross_entropy_of_confident_rows_keeps_relative_precision(isa: str, lanes: bool) -> None:
    """A confident row's loss log Σ exp(z − max z) = log1p(Σ over the other logits) is tiny, and
    log.hpp's log1p keeps it to relative precision, in a row alone and in a vector lane."""
    spec = NetSpec.build([10, 10], activation="tanh", loss="cross_entropy",
                         output_activation="softmax", bias=False, dtype=np.float64)
    nat = native.Network(spec, [np.eye(10)], None)  # Z = X: each row is its own logits
    margins = np.concatenate([np.linspace(0, 50, 101), [100.0, 300.0, 700.0]])
    want = np.log1p(9 * np.exp(-margins))  # nine logits `margin` below the first, class 0
    target = np.eye(10)[:1]
    # Seven rows of loss exactly 0 (every other exp underflows) fill a vector around the row.
    certain = np.zeros((7, 10))
    certain[:, 0] = 2000.0
    for margin, expected in zip(margins, want):
        row = np.zeros((1, 10))
        row[0, 0] = margin
        if lanes:
            got = nat.loss(np.vstack([row, certain]), np.repeat(target, 8, axis=0)) * 8
        else:
            got = nat.loss(row, target)
        assert got == pytest.approx(expected, rel=4e-15, abs=0), margin


@pytest.mark.parametrize("hidden, output, dtype, bias", GRID, ids=GRID_IDS)
def test_train_steps_of_every_optimizer(isa: str, hidden: str, output: tuple[str, str],
                                        dtype: type, bias: bool) -> None:
    spec, W, b, X, T = make_problem([6, 8, 5, 4], hidden, output, dtype, bias, rows=11, seed=1)
    rel = rel_tol(dtype)
    for name, make in OPTIMIZERS.items():
        nat, ref = both(spec, W, b)
        opt = make()
        # Adam divides by √v: on near-zero gradients it turns float32 rounding into O(lr)
        # differences, so float32 Adam is compared after one step only.
        steps = 1 if name.startswith("adam") and dtype == np.float32 else 3
        for step in range(steps):
            loss_n, loss_r = nat.train_step(X, T, opt), ref.train_step(X, T, opt)
            assert loss_n == pytest.approx(loss_r, rel=rel, abs=rel), (name, step)
            assert_same_state(nat, ref, rel, f"{name} step {step}")


@pytest.mark.parametrize("hidden, output, dtype, bias", GRID, ids=GRID_IDS)
def test_fit_epoch_with_shuffle(isa: str, hidden: str, output: tuple[str, str], dtype: type,
                                bias: bool) -> None:
    spec, W, b, X, T = make_problem([5, 8, 3], hidden, output, dtype, bias, rows=37, seed=2)
    nat, ref = both(spec, W, b)
    opt = dp.SGD(lr=0.05, momentum=0.9)
    rel = rel_tol(dtype)
    for epoch in (0, 1):
        loss_n = nat.fit_epoch(X, T, opt, 8, True, 5, epoch)
        loss_r = ref.fit_epoch(X, T, opt, 8, True, 5, epoch)
        assert loss_n == pytest.approx(loss_r, rel=10 * rel, abs=10 * rel)
        assert_same_state(nat, ref, 10 * rel, f"epoch {epoch}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fit_epoch_given_the_bound_of_X_trains_alike(dtype: type) -> None:
    # MLP.fit measures max |X| while checking X and passes it, so the bindings do not scan X
    # again every epoch: the result must be the one they get by scanning.
    spec, W, b, X, T = make_problem([5, 8, 3], "tanh", ("cross_entropy", "softmax"), dtype,
                                    True, rows=37, seed=2)
    scanned, given = native.Network(spec, W, b), native.Network(spec, W, b)
    opt = dp.Adam(lr=0.01)
    for epoch in (0, 1):
        loss_s = scanned.fit_epoch(X, T, opt, 8, True, 5, epoch)
        loss_g = given.fit_epoch(X, T, opt, 8, True, 5, epoch, x_largest=float(np.abs(X).max()))
        assert loss_g == loss_s
    for a, b_ in zip(scanned.get_weights()[0], given.get_weights()[0]):
        np.testing.assert_array_equal(a, b_)


@pytest.mark.parametrize("bound", [math.nan, math.inf, -1.0])
def test_fit_epoch_refuses_a_bound_of_X_that_is_no_magnitude(bound: float) -> None:
    spec, W, b, X, T = make_problem([5, 8, 3], "tanh", ("cross_entropy", "softmax"), np.float64,
                                    True, rows=37, seed=2)
    net = native.Network(spec, W, b)
    with pytest.raises(ValueError, match="x_largest must be finite and >= 0"):
        net.fit_epoch(X, T, dp.SGD(lr=0.1), 8, True, 5, 0, x_largest=bound)
    for a, b_ in zip(net.get_weights()[0], W):
        np.testing.assert_array_equal(a, b_)


def test_fit_passes_the_bound_its_check_of_X_measured(monkeypatch) -> None:
    net = dp.MLP([3, 4, 2], loss="cross_entropy", dtype="float32", seed=0)
    X = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
    seen = []
    fit_epoch = net._net.fit_epoch

    def spy(*args, **kwargs):
        seen.append(kwargs["x_largest"])
        return fit_epoch(*args, **kwargs)
    monkeypatch.setattr(net._net, "fit_epoch", spy)
    net.fit(X, np.arange(20) % 2, epochs=3, batch_size=4)
    assert seen == [float(np.abs(X).max())] * 3


# Networks one 32-byte vector wide (4 doubles, 8 floats per layer), trained online with plain
# SGD, take the register-resident step of online_tiny.cpp in fit_epoch; train_step takes the
# general online step. Cross-entropy (softmax) networks never take it.
TINY_GRID = [g for g in GRID if g[1][0] != "cross_entropy"]


@pytest.mark.parametrize("hidden, output, dtype, bias", TINY_GRID,
                         ids=[i for g, i in zip(GRID, GRID_IDS) if g[1][0] != "cross_entropy"])
def test_online_fit_epoch_of_a_tiny_network(isa: str, hidden: str, output: tuple[str, str],
                                            dtype: type, bias: bool) -> None:
    spec, W, b, X, T = make_problem([3, 4, 4, 2], hidden, output, dtype, bias, rows=29, seed=3)
    nat, ref = both(spec, W, b)
    general = native.Network(spec, W, b)
    opt = dp.SGD(lr=0.05, weight_decay=0.01)
    rel = rel_tol(dtype)
    for epoch in (0, 1):
        loss_n = nat.fit_epoch(X, T, opt, 1, True, 5, epoch)
        loss_r = ref.fit_epoch(X, T, opt, 1, True, 5, epoch)
        loss_g = np.mean([general.train_step(X[i:i + 1], T[i:i + 1], opt)
                          for i in shuffle.epoch_order(len(X), 5, epoch)])
        assert loss_n == pytest.approx(loss_r, rel=10 * rel, abs=10 * rel)
        assert loss_n == pytest.approx(loss_g, rel=10 * rel, abs=10 * rel)
        assert_same_state(nat, ref, 10 * rel, f"epoch {epoch}")
        # W is kept as rows and as columns: a drift between them would show here.
        assert_all_close(params(nat), params(general), 10 * rel, f"epoch {epoch}, general step")


def test_tiny_online_epoch_stopped_by_progress_keeps_its_steps() -> None:
    # The epoch trains on a copy of the weights; stopping it must write back every step done.
    spec, W, b, X, T = make_problem([2, 3, 1], "sigmoid", ("mse", "sigmoid"), np.float32, True,
                                    rows=3_000_000, seed=4)
    nat = native.Network(spec, W, b)
    opt = dp.SGD(lr=0.01)
    done: list[int] = []

    def stop(samples: int, loss_sum: float) -> None:
        done.append(samples)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        nat.fit_epoch(X, T, opt, 1, True, 5, 0, progress=stop)
    assert done and 0 < done[0] < len(X)
    twin = native.Network(spec, W, b)
    first = shuffle.epoch_order(len(X), 5, 0)[:done[0]]
    twin.fit_epoch(X[first], T[first], opt, 1, False, 0, 0)
    assert all(np.array_equal(p, q) for p, q in zip(params(nat), params(twin)))


# The general online step takes a layer's deltas eight rows of W at a time, with each row's
# partial sums in a fixed pattern of eight (floats) and the rest one by one: 19 and 11 units
# leave rows and columns over, 64 and 16 are whole groups.
@pytest.mark.parametrize("sizes", [[5, 19, 11, 3], [8, 64, 16, 10]])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("optimizer", ["sgd", "momentum"])
def test_online_steps_of_networks_wider_than_eight(isa: str, sizes: list[int], dtype: type,
                                                   optimizer: str) -> None:
    spec, W, b, X, T = make_problem(sizes, "tanh", ("mse", "sigmoid"), dtype, True, rows=7, seed=8)
    nat, ref = both(spec, W, b)
    opt = dp.SGD(lr=0.1, weight_decay=0.01, momentum=0.9 if optimizer == "momentum" else 0.0)
    rel = rel_tol(dtype)
    for i in range(len(X)):
        loss_n = nat.train_step(X[i:i + 1], T[i:i + 1], opt)
        loss_r = ref.train_step(X[i:i + 1], T[i:i + 1], opt)
        assert loss_n == pytest.approx(loss_r, rel=10 * rel, abs=10 * rel), i
        assert_same_state(nat, ref, 10 * rel, f"sample {i}")


@pytest.mark.parametrize("threads", [1, 2])
def test_tiny_online_epochs_visit_each_epochs_own_order(threads: int,
                                                        restore_threads: None) -> None:
    # On two threads a tiny online epoch sorts the next epoch's order beside its steps; a later
    # call must use it only when its (n, seed, epoch) is the one sorted.
    _native.set_num_threads(threads)
    spec, W, b, X, T = make_problem([2, 3, 1], "sigmoid", ("mse", "sigmoid"), np.float32, True,
                                    rows=20_000, seed=6)
    nat, twin = native.Network(spec, W, b), native.Network(spec, W, b)
    opt = dp.SGD(lr=0.05)
    calls = [(20_000, 5, 0), (20_000, 5, 1), (20_000, 5, 3), (20_000, 7, 4), (15_000, 7, 5),
             (20_000, 7, 6)]
    for n, seed, epoch in calls:
        nat.fit_epoch(X[:n], T[:n], opt, 1, True, seed, epoch)
        order = shuffle.epoch_order(n, seed, epoch)
        twin.fit_epoch(X[order], T[order], opt, 1, False, 0, 0)
        assert all(np.array_equal(p, q)
                   for p, q in zip(params(nat), params(twin))), (n, seed, epoch)


def test_apply_gradients_matches_train_step(isa: str) -> None:
    spec, W, b, X, T = make_problem([6, 10, 3], "tanh", ("cross_entropy", "softmax"),
                                    np.float64, True, rows=9)
    nat, ref = both(spec, W, b)
    stepped = native.Network(spec, W, b)
    opt = dp.Adam(lr=0.01, weight_decay=0.01)
    for _ in range(3):
        flat = np.empty(nat.n_parameters)
        nat.gradients_into(X, T, flat)
        nat.apply_gradients(flat, opt)
        ref.apply_gradients(flat, opt)
        stepped.train_step(X, T, opt)
    assert_same_state(nat, ref, 1e-12, "apply_gradients")
    assert_all_close(params(nat), params(stepped), 1e-12, "train_step")


# -- the per-layer loops of dp.ops -----------------------------------------------------------

def layer_arrays(dtype: type, rows: int = 10, n_in: int = 13, n_out: int = 7, seed: int = 0
                 ) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(rows, n_in)).astype(dtype)
    W = rng.normal(0, 1 / np.sqrt(n_in), (n_in, n_out)).astype(dtype)
    b = rng.normal(0, 0.1, n_out).astype(dtype)
    D = rng.normal(0, 0.1, (rows, n_out)).astype(dtype)
    return A, W, b, D


# Native against reference for one layer's forward pass, delta (of a layer whose output is A
# through `activation`) and update (lr 0.5; b may be None).
def check_forward_layer(A: np.ndarray, W: np.ndarray, b, activation: str) -> None:
    assert_close(native.forward_layer(A, W, b, activation, 0.1),
                 reference.forward_layer(A, W, b, activation, 0.1), rel_tol(A.dtype), activation)


def check_delta(A: np.ndarray, W: np.ndarray, D: np.ndarray, activation: str) -> None:
    A_prev = reference.forward_layer(A, np.eye(A.shape[1], dtype=A.dtype), None, activation, 0.1)
    assert_close(native.delta(D, W, A_prev, activation, 0.1),
                 reference.delta(D, W, A_prev, activation, 0.1), rel_tol(A.dtype), activation)


def check_update(A: np.ndarray, W: np.ndarray, b, D: np.ndarray) -> None:
    W_n, W_r = W.copy(), W.copy()
    b_n, b_r = (b.copy(), b.copy()) if b is not None else (None, None)
    native.update(W_n, b_n, A, D, 0.5)
    reference.update(W_r, b_r, A, D, 0.5)
    assert_close(W_n, W_r, rel_tol(A.dtype), "W")
    if b is not None:
        assert_close(b_n, b_r, rel_tol(A.dtype), "b")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("activation", list(HIDDEN_ACTIVATIONS) + ["softmax"])
def test_forward_layer(isa: str, dtype: type, bias: bool, activation: str) -> None:
    A, W, b, _ = layer_arrays(dtype)
    check_forward_layer(A, W, b if bias else None, activation)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss, activation", OUTPUTS)
def test_output_delta(isa: str, dtype: type, loss: str, activation: str) -> None:
    spec, W, b, X, T = make_problem([4, 5], "relu", (loss, activation), dtype, True, rows=9)
    A = reference.Network(spec, W, b).forward(X)
    assert_close(native.output_delta(A, T, loss, activation, 0.1),
                 reference.output_delta(A, T, loss, activation, 0.1), rel_tol(dtype), loss)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", HIDDEN_ACTIVATIONS)
def test_delta(isa: str, dtype: type, activation: str) -> None:
    A, W, b, D = layer_arrays(dtype)
    check_delta(A, W, D, activation)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("rows", [1, 10, 300])  # 300 > kc: the split-k path of the update
def test_update(isa: str, dtype: type, bias: bool, rows: int) -> None:
    A, W, b, D = layer_arrays(dtype, rows=rows)
    check_update(A, W, b if bias else None, D)


# The packed GEMM's epilogue for every activation, at the tile widths it gets as compile-time
# constants (8, 16 and 32 columns) and at edges beside them. The forward pass's tiles are n_out
# wide, the delta's n_in, the update's n_out.
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("width", [8, 10, 16, 32, 37])
@pytest.mark.parametrize("activation", HIDDEN_ACTIVATIONS)
def test_epilogue_of_packed_tiles(isa: str, dtype: type, width: int, activation: str) -> None:
    A, W, b, D = layer_arrays(dtype, rows=25, n_in=40, n_out=width)
    for bias in (b, None):
        check_forward_layer(A, W, bias, activation)
    check_update(A, W, b, D)
    A, W, _, D = layer_arrays(dtype, rows=25, n_in=width, n_out=40)
    check_delta(A, W, D, activation)


# Products large enough for the loop nest's other paths: at 2 threads the forward products of
# 200 rows split C by columns with A packed (each thread all of it), of 400 rows by rows (each
# thread all of B); 1100 deep is five kc blocks, and 3300 wide two nc blocks on one thread. (At
# 3 threads the 1100-wide products read A in place, in column chunks.) One output unit of 4100
# inputs takes the unpacked loops on 2 and 3 threads: the update's blocks of 256 of W's rows,
# and the forward's and delta's rows, shared between them. The same bits on 1, 2 and 3
# threads, and the reference's values, on each ISA.
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows, n_in, n_out", [(200, 1100, 1100), (400, 1100, 1100),
                                               (100, 300, 3300), (800, 4100, 1)])
def test_large_products_on_any_thread_count(isa: str, dtype: type, rows: int, n_in: int,
                                            n_out: int, restore_threads: None) -> None:
    A, W, b, D = layer_arrays(dtype, rows=rows, n_in=n_in, n_out=n_out)
    A_prev = np.maximum(A, 0)

    def products() -> list[np.ndarray]:
        W_updated = W.copy()
        native.update(W_updated, None, A, D, 0.5)
        return [native.forward_layer(A, W, b, "relu", 0.0), native.delta(D, W, A_prev, "relu", 0.0),
                W_updated]

    _native.set_num_threads(1)
    alone = products()
    check_forward_layer(A, W, b, "relu")
    check_delta(A, W, D, "relu")
    check_update(A, W, None, D)
    for threads in (2, 3):
        _native.set_num_threads(threads)
        for got, want in zip(products(), alone):
            np.testing.assert_array_equal(got, want)


# -- random shapes: edges of the microkernel tiles and of the kc blocking --------------------

EDGE_SIZES = [1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 127, 128, 129, 255,
              256, 257, 300]


@settings(deadline=None, max_examples=25)
@given(
    sizes=st.lists(st.sampled_from(EDGE_SIZES), min_size=2, max_size=4),
    rows=st.sampled_from(EDGE_SIZES),
    hidden=st.sampled_from(HIDDEN_ACTIVATIONS),
    output=st.sampled_from(OUTPUTS),
    dtype=st.sampled_from(DTYPES),
    bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
# A bias gradient of 0.113 summed from rows of ±10 (a 1-wide hidden layer's deltas, each a sum of
# 257 terms): float32 gets it to ~1e-8 of those rows, not of the result (found by CI).
@example(sizes=[15, 1, 257], rows=6, hidden="tanh", output=("mse", "tanh"), dtype=np.float32,
         bias=True, seed=52)
def test_random_shapes(sizes: list[int], rows: int, hidden: str, output: tuple[str, str],
                       dtype: type, bias: bool, seed: int) -> None:
    if output[0] == "cross_entropy" and sizes[-1] == 1:
        sizes = sizes[:-1] + [2]  # a one-class softmax is constant; still valid, just dull
    spec, W, b, X, T = make_problem(sizes, hidden, output, dtype, bias, rows, seed)
    rel = rel_tol(dtype)
    ref = reference.Network(spec, W, b)
    want_out, want_grads = ref.forward(X), ref.gradients(X, T)
    magnitudes = gradient_magnitudes(spec, W, b, X, T)
    opt = dp.SGD(lr=0.01, momentum=0.9)
    ref.train_step(X, T, opt)
    ref.train_step(X, T, opt)
    for name in ISAS:
        with using_isa(name):
            nat = native.Network(spec, W, b)
            assert_close(nat.forward(X), want_out, rel, f"{name} forward")
            dW, db = nat.gradients(X, T)
            assert_all_close(dW + (db or []), want_grads[0] + (want_grads[1] or []), rel,
                             f"{name} gradients", magnitudes)
            nat.train_step(X, T, opt)
            nat.train_step(X, T, opt)
            assert_all_close(params(nat), params(ref), rel, f"{name} after two steps")


# -- epoch order, determinism, the GIL, copies --------------------------------------------------

@pytest.mark.parametrize("n", [0, 1, 2, 7, 8, 9, 100, 1023, 5000, 2**17 + 3])
@pytest.mark.parametrize("seed, epoch", [(0, 0), (1, 0), (0, 1), (12345, 77),
                                         (2**64 - 1, 2**64 - 1)])
def test_epoch_order_matches_python(n: int, seed: int, epoch: int) -> None:
    got = _native.epoch_order(n, seed, epoch)
    want = shuffle.epoch_order(n, seed, epoch)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, want)


def test_epoch_order_ranks_keys_equal_in_their_stored_bits_by_the_whole_key() -> None:
    # The native sort keeps 64 - 21 bits of each key beside the index at this n; two of these
    # keys agree in all of them and the later index has the smaller key.
    n = 2_000_000
    np.testing.assert_array_equal(_native.epoch_order(n, 0, 0), shuffle.epoch_order(n, 0, 0))


def test_epoch_orders_differ_between_epochs_and_are_permutations() -> None:
    a, b = _native.epoch_order(1000, 3, 0), _native.epoch_order(1000, 3, 1)
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(np.sort(a), np.arange(1000))


def _train_big(dtype: type, threads: int) -> tuple[list[np.ndarray], float, np.ndarray]:
    _native.set_num_threads(threads)
    spec, W, b, X, T = make_problem([256, 512, 256, 10], "relu", ("cross_entropy", "softmax"),
                                    dtype, True, rows=768, seed=3)
    net = native.Network(spec, W, b)
    loss = net.fit_epoch(X, T, dp.SGD(lr=0.05, momentum=0.9), 256, True, 1, 0)
    net.train_step(X[:300], T[:300], dp.Adam(lr=1e-3))  # 300 rows: split-k in the update
    return params(net), loss, net.forward(X)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bitwise_identical_for_1_2_and_3_threads(isa: str, dtype: type,
                                                 restore_threads: None) -> None:
    runs = [_train_big(dtype, threads) for threads in (1, 2, 3)]
    for other in runs[1:]:
        assert other[1] == runs[0][1]
        for a, b in zip(other[0] + [other[2]], runs[0][0] + [runs[0][2]]):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows", [1, 255, 257, 1023, 2500, 4103])
def test_inference_in_blocks_is_the_same_on_any_thread_count(isa: str, dtype: type, rows: int,
                                                             restore_threads: None) -> None:
    # Inference runs blocks of rows on threads of their own (inference.cpp), sized by the thread
    # count (from 256 rows a thread; fewer split each product instead); the loss adds parts of
    # 64 rows in order.
    spec, W, b, X, T = make_problem([300, 64, 7], "tanh", ("cross_entropy", "softmax"), dtype,
                                    True, rows=rows, seed=rows)
    net, ref = both(spec, W, b)
    runs = []
    for threads in (1, 2, 3):
        _native.set_num_threads(threads)
        runs.append((net.forward(X), net.loss(X, T)))
    for out, loss in runs[1:]:
        np.testing.assert_array_equal(out, runs[0][0])
        assert loss == runs[0][1]
    assert_close(runs[0][0], ref.forward(X), rel_tol(dtype), "forward")
    assert runs[0][1] == pytest.approx(ref.loss(X, T), rel=rel_tol(dtype))
    # The last row alone gets the bits it got in its block.
    np.testing.assert_array_equal(net.forward(X[-1:]), runs[0][0][-1:])


def test_the_gil_is_released_during_a_native_epoch() -> None:
    spec, W, b, X, T = make_problem([128, 256, 10], "relu", ("cross_entropy", "softmax"),
                                    np.float32, True, rows=1024)
    net = native.Network(spec, W, b)
    count = 0
    running = True

    def counter() -> None:
        nonlocal count
        while running:
            count += 1

    thread = threading.Thread(target=counter)
    thread.start()
    try:
        time.sleep(0.01)
        before = count
        start = time.perf_counter()
        epochs = 0
        while time.perf_counter() - start < 0.3:  # long enough for many switch intervals
            net.fit_epoch(X, T, dp.SGD(lr=0.01), 64, True, 0, epochs)
            epochs += 1
        counted = count - before
    finally:
        running = False
        thread.join()
    # Holding the GIL would leave the counter a few increments per 0.1 s progress check.
    assert counted > 10_000, counted


def test_validation_passes_a_c_contiguous_array_of_the_dtype_without_copying() -> None:
    from deltaprop.validation import as_features

    X = np.random.default_rng(0).normal(size=(20, 5))
    assert as_features(X, 5, np.float64) is X
    assert not np.shares_memory(as_features(X, 5, np.float32), X)
    assert not np.shares_memory(as_features(np.asfortranarray(X), 5, np.float64), X)


@pytest.mark.parametrize("convert, copied", [(lambda X: X, False),
                                             (lambda X: X.astype(np.float32), True),
                                             (np.asfortranarray, True)])
def test_the_native_module_reads_c_contiguous_inputs_in_place(convert, copied: bool) -> None:
    spec, W, b, X, _ = make_problem([512, 4], "relu", ("mse", "identity"), np.float64, True,
                                    rows=2048)
    net = native.Network(spec, W, b)
    X = convert(X)
    want = reference.Network(spec, W, b).forward(np.ascontiguousarray(X, np.float64))
    tracemalloc.start()  # NumPy reports its allocations, so a conversion copy (8 MiB) shows
    try:
        out = net.forward(X)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (peak > X.size * 4) == copied, peak
    assert_close(out, want, 1e-5 if X.dtype == np.float32 else 1e-12)


def test_native_forward_accepts_views() -> None:
    spec, W, b, X, _ = make_problem([6, 5, 3], "tanh", ("mse", "identity"), np.float64, True,
                                    rows=40)
    nat, ref = both(spec, W, b)
    for view in (X[::3], X[:, :], X[5:17], np.asfortranarray(X)[2:9]):
        assert_close(nat.forward(view), ref.forward(np.ascontiguousarray(view)), 1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_ops_update_works_in_place(dtype: type) -> None:
    A, W, b, D = layer_arrays(dtype)
    W0, b0 = W.copy(), b.copy()
    dp.ops.update(W, b, A, D, lr=0.1, backend="native")
    assert_close(W, W0 - dtype(0.1) * (A.T @ D), rel_tol(dtype))
    assert_close(b, b0 - dtype(0.1) * D.sum(axis=0), rel_tol(dtype))


@pytest.mark.parametrize("make_W", [
    lambda W: np.asfortranarray(W),
    lambda W: np.hstack([W, W])[:, ::2],
    lambda W: W.astype(np.float32),
    lambda W: W.astype(np.int64),
], ids=["fortran", "strided", "float32", "int64"])
def test_native_update_refuses_an_array_it_would_have_to_copy(make_W) -> None:
    A, W, b, D = layer_arrays(np.float64)
    bad = make_W(W)
    before = bad.copy()
    with pytest.raises(TypeError):
        _native.update(bad, b, A, D, 0.1)
    np.testing.assert_array_equal(bad, before)
    if bad.dtype == np.float32:
        return  # a float32 W is fine for dp.ops, which casts A_prev and D to it
    # The public wrapper refuses too (ValueError for layout, TypeError for dtype), never a copy.
    with pytest.raises((TypeError, ValueError)):
        dp.ops.update(bad, None, A, D, 0.1, backend="native")
    np.testing.assert_array_equal(bad, before)
