"""Shuffled batches read where their samples lie (fit_epoch, csrc/network.cpp).

A shuffled batch too large to be asked for a step ahead, of a network whose first hidden layer
is narrower than 512 units, is not gathered: its first layer's products read X's rows through a
table of the batch's rows (a gathered view, gemm.hpp), by rows in the forward product and by
columns in the gradient's. The kernels sum those rows as they sum a contiguous batch, so a fit
must give the bits of steps on the same batches copied out (train_step), on any thread count
and every ISA.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_native import (  # noqa: F401  (isa and restore_threads: fixtures, used below)
    DTYPES,
    isa,
    make_problem,
    params,
    restore_threads,
)

import deltaprop as dp
from deltaprop import _native
from deltaprop.backends import native
from deltaprop.shuffle import epoch_order

# 301 inputs: two depth blocks of the forward product (the AVX-512 and AVX2 kernels' kc is 256,
# and a last block takes in up to kc/8 more), rows neither 16-byte multiples nor aligned.
# Batches of 320: two depth blocks of the gradient product, whose depth is the batch. 8·320 + 37
# rows: a last batch of 37, a tile of fewer than eight rows at its edge. A hidden layer of one
# unit: products of one column, which run unpacked; 2100 of its 10-element rows are a batch
# too large to be asked for a step ahead, which is read in place, and the last batch is one
# row (an online step).
PROBLEMS = {"packed": ([301, 33, 5], 320, 320 * 8 + 37), "unpacked": ([7, 1, 3], 2100, 4201)}
SEED, EPOCHS = 11, 2


def _problem(dtype: type, sizes: list[int], rows: int
             ) -> tuple[native.Network, np.ndarray, np.ndarray]:
    spec, W, b, X, T = make_problem(sizes, "tanh", ("cross_entropy", "softmax"), dtype, True,
                                    rows=rows, seed=3)
    return native.Network(spec, W, b), X, T


def _fit(dtype: type, problem: str, threads: int) -> tuple[list[np.ndarray], list[float]]:
    _native.set_num_threads(threads)
    sizes, batch, rows = PROBLEMS[problem]
    net, X, T = _problem(dtype, sizes, rows)
    opt = dp.SGD(lr=0.05, momentum=0.9)
    losses = [net.fit_epoch(X, T, opt, batch, True, SEED, epoch) for epoch in range(EPOCHS)]
    return params(net), losses


def _steps_on_copies(dtype: type, problem: str) -> list[np.ndarray]:
    sizes, batch, rows = PROBLEMS[problem]
    net, X, T = _problem(dtype, sizes, rows)
    opt = dp.SGD(lr=0.05, momentum=0.9)
    for epoch in range(EPOCHS):
        order = epoch_order(len(X), SEED, epoch)
        for start in range(0, len(X), batch):
            ids = order[start:start + batch]
            net.train_step(np.ascontiguousarray(X[ids]), np.ascontiguousarray(T[ids]), opt)
    return params(net)


@pytest.mark.usefixtures("isa", "restore_threads")
@pytest.mark.parametrize("problem", sorted(PROBLEMS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_batches_read_in_place_give_the_bits_of_copied_ones(dtype: type, problem: str) -> None:
    _native.set_num_threads(2)
    copied = _steps_on_copies(dtype, problem)
    for threads in (1, 2, 3):
        in_place, losses = _fit(dtype, problem, threads)
        assert all(np.isfinite(losses))
        for got, want in zip(in_place, copied):
            np.testing.assert_array_equal(got, want, err_msg=f"{threads} threads")
