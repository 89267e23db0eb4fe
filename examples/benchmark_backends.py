"""Native (C++ SIMD + OpenMP) against reference (NumPy) backend: speed and agreement.

    python examples/benchmark_backends.py              # ~10 s
    python examples/benchmark_backends.py --threads 1  # one OpenMP thread
    DELTAPROP_EXAMPLES_FAST=1 python examples/...      # tiny sizes (what the tests run)

For a few network shapes and both dtypes, trains the same network (same seed, same shuffle)
for one epoch on each backend and prints samples per second and the largest difference between
the resulting weights. Then times one layer's forward pass with ``dp.ops.forward`` alone.
The reference backend's matrix products run in NumPy's BLAS, which may use threads of its own.
For the project's full benchmark against other libraries see ``bench/run.py``.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import deltaprop as dp

FAST = os.environ.get("DELTAPROP_EXAMPLES_FAST") == "1"
SHAPES = ([[32, 16, 4]] if FAST
          else [[64, 128, 10], [784, 256, 128, 10], [256, 1024, 1024, 10]])
SAMPLES = 256 if FAST else 8192


def best_of(fn, repeats: int) -> float:
    """Shortest wall time of ``repeats`` runs: the least disturbed by the rest of the machine."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def train_both(sizes: list[int], dtype: str, repeats: int) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(SAMPLES, sizes[0])).astype(dtype)
    y = rng.integers(0, sizes[-1], SAMPLES)
    speed, weights = {}, {}
    for backend in ("native", "reference"):
        def one_epoch(backend: str = backend) -> None:
            net = dp.MLP(sizes, activation="relu", dtype=dtype, backend=backend, seed=0)
            net.fit(X, y, epochs=1, batch_size=128, optimizer=dp.SGD(lr=0.01, momentum=0.9))
            weights[backend] = net.get_weights()[0]
        speed[backend] = SAMPLES / best_of(one_epoch, repeats)
    diff = max(float(np.abs(a - b).max()) for a, b in zip(weights["native"],
                                                        weights["reference"]))
    print(f"{str(sizes):22} {dtype:8} {speed['native']:>12,.0f} {speed['reference']:>12,.0f} "
          f"{speed['native'] / speed['reference']:>7.1f}x {diff:>10.1e}")


def forward_layer(n_in: int, n_out: int, batch: int, repeats: int) -> None:
    rng = np.random.default_rng(1)
    A = rng.normal(size=(batch, n_in)).astype(np.float32)
    W = rng.normal(size=(n_in, n_out)).astype(np.float32) / np.sqrt(n_in)
    b = np.zeros(n_out, np.float32)
    flops = 2.0 * batch * n_in * n_out
    line = f"forward {batch}x{n_in} @ {n_in}x{n_out}, relu, float32:"
    for backend in ("native", "reference"):
        seconds = best_of(lambda b_=backend: dp.ops.forward(A, W, b, "relu", backend=b_),
                          repeats)
        line += f"  {backend} {flops / seconds / 1e9:.1f} GFLOP/s"
    print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads is not None:
        dp.set_num_threads(args.threads)
    info = dp.cpu_info()
    print(f"deltaprop {dp.__version__}: ISA {info['isa']}, {dp.get_num_threads()} thread(s); "
          f"one epoch of {SAMPLES} samples, batch 128, SGD with momentum\n")
    print(f"{'network':22} {'dtype':8} {'native/s':>12} {'reference/s':>12} {'speedup':>8} "
          f"{'max |ΔW|':>10}")
    repeats = 1 if FAST else 3
    for sizes in SHAPES:
        for dtype in ("float32", "float64"):
            train_both(sizes, dtype, repeats)
    print()
    forward_layer(*((32, 16, 64) if FAST else (1024, 1024, 512)), repeats=repeats)


if __name__ == "__main__":
    main()
