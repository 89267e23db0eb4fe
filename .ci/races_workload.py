"""The multithreaded workload .ci/races runs under ThreadSanitizer: every OpenMP path of the
native kernels at 2 threads, and the Python-thread uses the bindings allow.

Sizes are chosen to take the parallel paths: GEMMs of well over 4096 multiply-adds with output
tiles for both threads (packed panels), batches above the GEMM's kc (split-k weight update),
inference in blocks of rows on both threads, the online (one-row) step, the tiny online step,
whose epochs sort the next epoch's order on the other thread (from a few thousand samples on),
the split step of networks whose products are each too small to share (forty steps a fit:
its first ten time both ways, so at least five run split), and batches gathered with their rows
streamed past the caches (the round trip's bound at 0: whenever two threads gather).
"""

from __future__ import annotations

import threading

import numpy as np

import deltaprop as dp

dp.set_num_threads(2)
assert dp.get_num_threads() == 2
rng = np.random.default_rng(0)

for dtype in ("float32", "float64"):
    X = rng.normal(size=(640, 200)).astype(dtype)
    y = rng.integers(0, 10, size=640)
    for optimizer in (dp.SGD(lr=0.01, momentum=0.9), dp.Adam(lr=1e-3)):
        net = dp.MLP([200, 256, 128, 10], activation="relu", dtype=dtype, seed=1)
        net.fit(X, y, epochs=1, batch_size=320, optimizer=optimizer)  # split-k: 320 > kc
        bound = dp._native.set_stream_beyond_round_trip_ns(0.0)
        net.fit(X, y, epochs=2, batch_size=320, optimizer=optimizer)  # gathered rows streamed
        dp._native.set_stream_beyond_round_trip_ns(bound)
        net.fit(X[:64], y[:64], epochs=1, batch_size=1, optimizer=optimizer)  # online steps
        net.forward(np.repeat(X, 3, axis=0))  # 1920 rows: a block of 1024 and one of 896
        net.gradients(X, y)
        net.loss(X, y)  # blocks of 512 and 128 rows
    Xs = rng.uniform(-1, 1, size=(5000, 2)).astype(dtype)
    ys = rng.uniform(size=(5000, 1)).astype(dtype)
    tiny = dp.MLP([2, 3, 1], activation="sigmoid", output_activation="sigmoid", loss="mse",
                  dtype=dtype, seed=1)
    tiny.fit(Xs, ys, epochs=3, batch_size=1, optimizer=dp.SGD(lr=0.01))  # orders sorted ahead
    Xd = rng.normal(size=(32 * 40, 64)).astype(dtype)
    yd = rng.integers(0, 10, size=32 * 40)
    for optimizer in (dp.SGD(lr=0.01, momentum=0.9), dp.Adam(lr=1e-3)):
        digits = dp.MLP([64, 128, 64, 10], activation="relu", dtype=dtype, seed=1)
        digits.fit(Xd, yd, epochs=1, batch_size=32, optimizer=optimizer)  # split steps
    W = rng.normal(size=(200, 256)).astype(dtype)
    b = np.zeros(256, dtype)
    A = dp.ops.forward(X, W, b, activation="tanh")
    D = dp.ops.delta(rng.normal(size=(640, 256)).astype(dtype), W, X, activation="identity")
    dp.ops.update(W, b, X, rng.normal(size=(640, 256)).astype(dtype) * 1e-3, lr=0.1)
    assert A.shape == (640, 256) and D.shape == (640, 200)

# Python threads: two networks at once (GIL released), and one network from two threads
# (serialised by its mutex), each with the OpenMP team of its own calls.
X = rng.normal(size=(512, 200)).astype("float32")
y = rng.integers(0, 10, size=512)
nets = [dp.MLP([200, 128, 10], seed=s) for s in (1, 2)]
shared = dp.MLP([200, 128, 10], seed=3)


def train(net: dp.MLP) -> None:
    net.fit(X, y, epochs=2, batch_size=64, optimizer=dp.SGD(lr=0.01))


def read(net: dp.MLP) -> None:
    for _ in range(5):
        net.forward(X)
        net.get_weights()


threads = [threading.Thread(target=train, args=(n,)) for n in nets]
threads += [threading.Thread(target=train, args=(shared,)),
            threading.Thread(target=read, args=(shared,))]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("races workload: done")
