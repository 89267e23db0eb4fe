"""The step of a small network split between two threads (csrc/split_step.cpp).

Where every product of a step is too small to share threads, two threads split the step itself:
rows through forward, loss and deltas, then columns of the gradients and updates. It must give
the bits one thread gives. At 2 and 3 threads a fit alternates between the split step and the
step on one thread as it times them (faster_of_two.hpp): the first five steps run unsplit, the
next five split, and then whichever was faster, the other every 128th. Each case here runs at
least 20 steps a fit, so both ways run, in either order.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_native import (  # noqa: F401  (isa and restore_threads: fixtures, used below)
    DTYPES,
    assert_same_state,
    both,
    isa,
    make_problem,
    params,
    rel_tol,
    restore_threads,
)

import deltaprop as dp
from deltaprop import _native

# sizes, hidden, (loss, output activation), bias, batch, rows, optimizer
CASES = {
    # digits-shaped; the last batch of 19 rows splits unevenly (16 + 3 on AVX-512)
    "digits": ([64, 128, 64, 10], "relu", ("cross_entropy", "softmax"), True, 32, 32 * 20 + 19,
               lambda: dp.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)),
    # one output unit (its gradient product runs unpacked, on one share); 300 rows a batch sum
    # the gradients in two depth blocks (split-k)
    "one_output_split_k": ([32, 40, 1], "tanh", ("mse", "identity"), True, 300, 300 * 20 + 7,
                           lambda: dp.Adam(lr=1e-3, weight_decay=1e-2)),
    # no biases, widths that leave part tiles in every product
    "ragged": ([20, 48, 33, 7], "sigmoid", ("binary_cross_entropy", "sigmoid"), False, 150,
               150 * 24, lambda: dp.SGD(lr=0.1)),
}


def _fit(case: str, dtype: type, threads: int) -> tuple[list[np.ndarray], list[float],
                                                          np.ndarray]:
    sizes, hidden, output, bias, batch, rows, optimizer = CASES[case]
    _native.set_num_threads(threads)
    spec, W, b, X, T = make_problem(sizes, hidden, output, dtype, bias, rows=rows, seed=4)
    net, _ = both(spec, W, b)
    opt = optimizer()
    losses = [net.fit_epoch(X, T, opt, batch, True, 7, epoch) for epoch in range(2)]
    # A step given no bound on X scans its rows for the guard: each share its own.
    losses.append(net.train_step(X[:batch], T[:batch], opt))
    return params(net), losses, net.forward(X)


@pytest.mark.usefixtures("isa", "restore_threads")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(CASES))
def test_split_steps_give_the_bits_of_one_thread(case: str, dtype: type) -> None:
    one = _fit(case, dtype, 1)
    for threads in (2, 3):
        other = _fit(case, dtype, threads)
        assert other[1] == one[1], f"losses at {threads} threads"
        for got, want in zip(other[0] + [other[2]], one[0] + [one[2]]):
            np.testing.assert_array_equal(got, want)


@pytest.mark.usefixtures("isa", "restore_threads")
@pytest.mark.parametrize("dtype", DTYPES)
def test_split_steps_agree_with_the_reference(dtype: type) -> None:
    sizes, hidden, output, bias, batch, rows, optimizer = CASES["digits"]
    _native.set_num_threads(2)
    spec, W, b, X, T = make_problem(sizes, hidden, output, dtype, bias, rows=rows, seed=5)
    nat, ref = both(spec, W, b)
    opt = optimizer()
    rel = rel_tol(dtype)
    for epoch in (0, 1):
        loss_n = nat.fit_epoch(X, T, opt, batch, True, 3, epoch)
        loss_r = ref.fit_epoch(X, T, opt, batch, True, 3, epoch)
        assert loss_n == pytest.approx(loss_r, rel=10 * rel)
        assert_same_state(nat, ref, 10 * rel, f"epoch {epoch}")


@pytest.mark.usefixtures("restore_threads")
def test_a_split_step_that_diverges_changes_nothing() -> None:
    # The guard runs between the split step's two halves: a batch whose loss is not finite
    # updates nothing, on either share's columns.
    sizes, hidden, output, bias, batch, rows, optimizer = CASES["digits"]
    _native.set_num_threads(2)
    spec, W, b, X, T = make_problem(sizes, hidden, output, np.float32, bias, rows=batch * 12)
    net, _ = both(spec, W, b)
    opt = optimizer()
    net.fit_epoch(X, T, opt, batch, True, 1, 0)  # long enough to have timed both ways
    before = params(net), net.optimizer_state()
    X_bad = X[:batch].copy()
    X_bad[batch - 1] = np.float32(3e38)  # in the second share's rows: Z overflows
    for _ in range(12):  # whichever way each step runs
        assert not np.isfinite(net.train_step(X_bad, T[:batch], opt))
    for got, want in zip(params(net), before[0]):
        np.testing.assert_array_equal(got, want)
    assert net.optimizer_state()["step"] == before[1]["step"]
