"""A shuffled batch read where its samples lie (Network::fit_epoch, MatrixView::row_ids).

A batch too large to be asked for a step ahead is not gathered: the first layer's forward and
gradient products take its rows from X through the epoch's order, in the microkernel (rows, or
the transposed columns, listed), by packing the listed columns, or from a copy of the listed rows
where A is packed or the product runs unpacked. The sums are the same, in the same order, so a
shuffled epoch must give the bits of an epoch over the same rows gathered beforehand, in order.
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
from deltaprop import _native, shuffle
from deltaprop.backends import native

# sizes, hidden, (loss, output activation), batch, rows. Every batch is over 32 KB, so none is
# asked for a step ahead (and gathered).
CASES = {
    # 300 inputs: the forward product's rows in two depth blocks (kc 256 on AVX-512); a last
    # batch of 37 rows ends in part tiles
    "deep_rows": ([300, 64, 10], "relu", ("cross_entropy", "softmax"), 100, 100 * 5 + 37),
    # 600 units: on one thread the forward product packs A (from a copy of the listed rows)
    # and the gradient product packs the listed columns
    "packed": ([200, 600, 5], "tanh", ("mse", "identity"), 64, 64 * 4 + 50),
    # 300 rows a batch: the gradient product's listed columns in two depth blocks (split-k)
    "deep_batch": ([64, 40, 3], "sigmoid", ("binary_cross_entropy", "sigmoid"), 300, 300 * 3),
    # few rows and a small W: B read in place where its panels are narrow (AVX2, baseline)
    "narrow": ([300, 48, 5], "tanh", ("mse", "identity"), 40, 40 * 6 + 13),
    # one hidden unit: both first-layer products run unpacked, on a copy of the listed rows
    "one_unit": ([150, 1, 3], "relu", ("cross_entropy", "softmax"), 60, 60 * 4),
}


@pytest.mark.usefixtures("isa", "restore_threads")
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(CASES))
def test_a_shuffled_epoch_gives_the_bits_of_its_rows_gathered_in_order(
        case: str, dtype: type, threads: int) -> None:
    sizes, hidden, output, batch, rows = CASES[case]
    _native.set_num_threads(threads)
    spec, W, b, X, T = make_problem(sizes, hidden, output, dtype, True, rows=rows, seed=11)
    shuffled, gathered = native.Network(spec, W, b), native.Network(spec, W, b)
    opt = dp.SGD(lr=0.05, momentum=0.9)
    for epoch in range(2):
        order = shuffle.epoch_order(rows, 3, epoch)
        loss = shuffled.fit_epoch(X, T, opt, batch, True, 3, epoch)
        assert loss == gathered.fit_epoch(X[order], T[order], opt, batch, False, 0, 0), epoch
        for p, q in zip(params(shuffled), params(gathered)):
            np.testing.assert_array_equal(p, q, err_msg=f"epoch {epoch}")
