"""Shuffled batches gathered with their rows streamed past the caches (csrc/.../batch_rows.hpp).

fit_epoch streams the rows it gathers while the cores of its first two threads sit far apart
(round_trip.hpp): a cache line's round trip longer than a bound, 150 ns unless set. With the
bound at 0 it streams them whenever two threads gather, so these tests run that path on any
machine; one thread never streams. A streamed row holds the same bytes, so a fit must give the
bits of one thread.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import numpy as np
import pytest
from test_native import (  # noqa: F401  (restore_threads: a fixture, used below)
    DTYPES,
    both,
    make_problem,
    params,
    restore_threads,
)

import deltaprop as dp
from deltaprop import _native

# Rows of 257 + 5 elements: neither 16-byte multiples nor aligned, so every streamed row has a
# head and a tail of plain stores. 320 of them are a batch large enough (84k elements) for its
# gather to run on three threads, and the 5-wide output layer's products on one, while another
# copies the next batch's first rows.
SIZES, BATCH, ROWS = [257, 33, 5], 320, 320 * 8 + 37


@pytest.fixture
def streamed_whenever_two_threads_gather() -> Iterator[None]:
    before = _native.set_stream_beyond_round_trip_ns(0.0)
    yield
    _native.set_stream_beyond_round_trip_ns(before)


def _fit(dtype: type, threads: int) -> tuple[list[np.ndarray], list[float]]:
    _native.set_num_threads(threads)
    spec, W, b, X, T = make_problem(SIZES, "tanh", ("cross_entropy", "softmax"), dtype, True,
                                    rows=ROWS, seed=3)
    net, _ = both(spec, W, b)
    opt = dp.SGD(lr=0.05, momentum=0.9)
    losses = [net.fit_epoch(X, T, opt, BATCH, True, 11, epoch) for epoch in range(3)]
    return params(net), losses


@pytest.mark.usefixtures("restore_threads", "streamed_whenever_two_threads_gather")
@pytest.mark.parametrize("dtype", DTYPES)
def test_streamed_batches_give_the_bits_of_one_thread(dtype: type) -> None:
    one = _fit(dtype, 1)
    for threads in (2, 3):
        other = _fit(dtype, threads)
        assert other[1] == one[1], f"losses at {threads} threads"
        for got, want in zip(other[0], one[0]):
            np.testing.assert_array_equal(got, want)


@pytest.mark.usefixtures("restore_threads")
def test_the_bound_is_kept_and_returned() -> None:
    before = _native.set_stream_beyond_round_trip_ns(math.inf)
    try:
        assert _native.set_stream_beyond_round_trip_ns(0.0) == math.inf
        # Never streamed, whatever the placement: the same bits as streamed.
        _native.set_stream_beyond_round_trip_ns(math.inf)
        never = _fit(np.float32, 2)
        _native.set_stream_beyond_round_trip_ns(0.0)
        always = _fit(np.float32, 2)
        assert never[1] == always[1]
        for got, want in zip(never[0], always[0]):
            np.testing.assert_array_equal(got, want)
    finally:
        _native.set_stream_beyond_round_trip_ns(before)


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1


@pytest.mark.skipif(_cpus() < 2, reason="two threads on one CPU cannot meet in time")
@pytest.mark.usefixtures("restore_threads")
def test_two_threads_on_two_cpus_measure_their_round_trip() -> None:
    _native.set_num_threads(2)
    # A host that stalls a vCPU mid-probe, or another process busy on one of the CPUs, makes it
    # give up (five in a row did, beside a CI run); one of many, a few ms apart, must get through.
    trips = []
    for _ in range(200):
        trips.append(_native.round_trip_ns())
        if 0 < trips[-1] < 1e6:
            break
        time.sleep(0.005)
    assert 0 < trips[-1] < 1e6, trips


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="pins a process to one CPU")
def test_two_threads_on_one_cpu_give_the_probe_up() -> None:
    # Each waited for the other through its time slice: on one CPU a 2-thread MNIST-shaped fit
    # ran at half the speed of one without the probe (90k against 35-45k samples/s).
    code = (
        "import math, os\n"
        "os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
        "from deltaprop import _native\n"
        "_native.set_num_threads(2)\n"
        "print(sum(math.isnan(_native.round_trip_ns()) for _ in range(5)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    # Preempted just after it sent, a side may find the answer there when it runs again; so
    # not every probe gives up, but a probe that never did spun through the other's slices.
    assert int(out.stdout) >= 1, out
