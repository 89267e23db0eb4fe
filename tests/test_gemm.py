"""The packed GEMM on its own, through the three layouts the network uses, on every ISA.

``forward_layer`` with the identity and no bias is ``A W`` (both row-major), ``delta`` with the
identity is ``D Wᵀ`` (B transposed) and ``update`` with lr = 1 subtracts ``Aᵀ D`` (A transposed,
split over k when the batch exceeds the kc blocking). Sizes straddle the microkernel tiles
(MR = 4/6/8, NR = 4/8/16/32) and kc = 256, as XNNPACK lists its kernel tests: m < MR,
n < NR, k = 1, and every remainder; and wide enough for A to be packed.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from deltaprop import _native

ISAS = list(_native.cpu_info()["isas_supported"])
EDGES = [1, 3, 4, 5, 6, 7, 8, 9, 16, 17, 31, 33]
# k = kc + kc/8 = 288 runs as one block deeper than kc, 289 as two: the last block takes in a
# remainder of up to kc/8 (784 = 256 + 256 + 272).
K_EDGES = [1, 2, 7, 127, 128, 129, 255, 256, 257, 288, 289, 300, 513, 784]
# Beyond those: every width of an edge panel and tile on the packed path (n = 2..40 over NR =
# 8/16/32, rows copied in overlapping fixed-size moves); and from 512 columns per thread on, where
# A is packed rather than read in place: n = 1030 (and k = 1030 for delta's output) takes that
# path at 1 and 2 threads; with m = 270, 2 threads split C by rows, each packing its half of A.
# m = 737 with A packed runs row blocks of 240, 240 and two that share the rest (132 and 125
# rows) at 1 thread, two of 184 at 2. With n = 1 the update's product Aᵀ D runs unpacked as
# one row of Cᵀ, in blocks of 256 of its k rows: k = 255 ... 1030 end in a block's every edge.
SHAPES = sorted(set(itertools.product([1, 5, 6, 7, 13], EDGES, [1, 9])) |
                set(itertools.product([2, 300], [1], [255, 256, 257, 1030])) |
                set(itertools.product([2, 6, 25], [1, 8, 33], K_EDGES)) |
                set(itertools.product([25], range(2, 41), [300])) |
                set(itertools.product([7, 25], [1030], [1, 33, 300, 1030])) |
                {(270, 1030, 33), (737, 1030, 9)})


@pytest.fixture(params=ISAS)
def isa(request: pytest.FixtureRequest):
    before = _native.cpu_info()["isa"]
    _native.select_isa(request.param)
    yield request.param
    _native.select_isa(before)


def operands(m: int, n: int, k: int, dtype: type, seed: int = 0):
    rng = np.random.default_rng(seed + 1000 * m + 10 * n + k)
    return (rng.normal(size=(m, k)).astype(dtype), rng.normal(size=(k, n)).astype(dtype))


def check(got: np.ndarray, want: np.ndarray, dtype: type) -> None:
    assert got.dtype == dtype
    rel = 1e-5 if dtype == np.float32 else 1e-12
    scale = max(float(np.abs(want).max()), 1.0)
    np.testing.assert_array_less(np.abs(got - want), rel * scale + 1e-300)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m, n, k", SHAPES)
def test_gemm_layouts(isa: str, dtype: type, m: int, n: int, k: int) -> None:
    A, W = operands(m, n, k, dtype)
    exact = A.astype(np.float64) @ W.astype(np.float64)
    check(_native.forward_layer(A, W, None, "identity", 0.0), exact, dtype)
    # delta: (m×n) · (k×n)ᵀ with the derivative of the identity (1) in its epilogue.
    D = np.ascontiguousarray(exact.astype(dtype))
    ones = np.ones((m, k), dtype)
    check(_native.delta(D, W, ones, "identity", 0.0),
          D.astype(np.float64) @ W.astype(np.float64).T, dtype)
    # update: W −= 1 · Aᵀ D with A (m×k) as A_prev and D (m×n); W starts at zero.
    Wz = np.zeros((k, n), dtype)
    _native.update(Wz, None, A, D, 1.0)
    check(-Wz, A.astype(np.float64).T @ D.astype(np.float64), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m", [7, 25])
def test_bias_is_added_once_per_row(isa: str, dtype: type, m: int) -> None:
    # k > kc: the bias must not be added per k block. With 25 rows the narrow panel's whole
    # tiles keep their first block's partial sums in C (masked moves on AVX-512) for the
    # epilogue's last block to read back.
    A, W = operands(m, 19, 300, dtype)
    b = np.arange(19, dtype=dtype)
    want = A.astype(np.float64) @ W.astype(np.float64) + b
    check(_native.forward_layer(A, W, b, "identity", 0.0), want, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [10, 45])
@pytest.mark.parametrize("k", [70, 300])
def test_a_non_finite_product_in_the_last_column_is_measured(isa: str, dtype: type, n: int,
                                                             k: int) -> None:
    # forward_layer proves W finite by measuring its products. C's last column lies in a panel
    # narrower than NR, whose tiles the kernels write straight into C in part rows, measuring
    # the sums in the first `cols` lanes of their registers. 144 rows are whole tiles for every
    # MR (4, 6, 8), so no other path sees the bad column.
    A, W = np.ones((144, k), dtype), np.ones((k, n), dtype)
    p = k // 3
    W[p, n - 1] = np.inf
    A[:, p] = 0
    with pytest.raises(ValueError, match=f"W must be finite; row {p} holds"):
        _native.forward_layer(A, W, None, "identity", 0.0)
    W[p, n - 1] = 1
    A[:, p] = 1
    check(_native.forward_layer(A, W, None, "identity", 0.0),
          A.astype(np.float64) @ W.astype(np.float64), dtype)
