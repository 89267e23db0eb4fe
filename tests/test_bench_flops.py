"""bench/'s FLOP count of a training step: the products a trainer runs, no more. It once counted
6·Σ n_(l-1)·n_l, the inputs' delta included, which no trainer computes, and overstated every
rate (MNIST-shaped by 1.4×)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import numpy_loop  # noqa: E402
from workloads import WORKLOADS, products, training_flops  # noqa: E402


@pytest.mark.parametrize("sizes", [(2, 3, 1), (64, 128, 64, 10), (784, 256, 128, 10), (5, 4)])
def test_a_step_counts_the_flops_of_the_products_the_numpy_loop_runs(sizes, monkeypatch):
    batch, counted = 8, []
    matmul = np.matmul

    def counting_matmul(a, b, out=None):
        counted.append(2 * a.shape[0] * a.shape[1] * b.shape[1])
        return matmul(a, b, out=out)

    monkeypatch.setattr(numpy_loop.np, "matmul", counting_matmul)
    net = numpy_loop.NumpyMLP(sizes, "relu", "softmax", "cross_entropy", "sgd", 0.01)
    rng = np.random.default_rng(0)
    X = rng.random((batch, sizes[0]), dtype=np.float32)
    T = np.eye(sizes[-1], dtype=np.float32)[rng.integers(0, sizes[-1], batch)]
    net.step(X, T, np.arange(batch))
    assert sum(counted) == batch * training_flops(sizes)


def test_every_training_workload_is_counted_so():
    for w in WORKLOADS:
        predicted = 2 * products(w.sizes)  # the forward products alone
        assert w.flops_per_sample == (predicted if w.inference else training_flops(w.sizes))
    assert training_flops((784, 256, 128, 10)) == 1_007_104  # 6·Σ would be 1,408,512
