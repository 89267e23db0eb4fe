"""The epoch loop allocates nothing a step (issue 3): its workspace is sized once per batch size.

A fresh interpreter with tests/malloc_counter.c preloaded counts every C heap allocation. A fit of
300 steps and one of 100 make the same per-fit and per-epoch allocations, so what the longer one
makes beyond the shorter is what its 200 extra steps allocated. Before the count was taken, a
2-thread MNIST-shaped step made nine: each shared GEMM's per-thread magnitudes in a vector and its
chunk claims on the heap.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent

CHILD = r"""
import ast, ctypes, sys
import numpy as np
import deltaprop as dp

counter = ctypes.CDLL(sys.argv[1])
counter.allocations.restype = ctypes.c_long
sizes, batch, threads, optimizer = ast.literal_eval(sys.argv[2])
dp.set_num_threads(threads)
rng = np.random.default_rng(0)
X = rng.standard_normal((300 * batch, sizes[0])).astype(np.float32)
y = rng.integers(0, sizes[-1], len(X))
net = dp.MLP(sizes, activation="relu", loss="cross_entropy", dtype="float32", seed=0)
opt = dp.Adam(lr=1e-3) if optimizer == "adam" else dp.SGD(lr=0.01, momentum=0.9)
net.fit(X, y, epochs=1, batch_size=batch, optimizer=opt)  # workspaces, pools, lazy imports
made = []
for steps in (100, 300, 100, 300):
    before = counter.allocations()
    net.fit(X[: steps * batch], y[: steps * batch], epochs=1, batch_size=batch, optimizer=opt)
    made.append(counter.allocations() - before)
print(made[0], made[1], made[2], made[3])
"""


@pytest.fixture(scope="module")
def malloc_counter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        pytest.skip("the counter passes calls on to glibc's own malloc")
    if os.environ.get("LD_PRELOAD"):
        # A sanitizer run (.ci/sanitize) preloads its own malloc, which would come first.
        pytest.skip("malloc is already replaced by a preloaded library")
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the counter")
    library = tmp_path_factory.mktemp("malloc_counter") / "malloc_counter.so"
    subprocess.run([cc, "-O2", "-shared", "-fPIC", str(HERE / "malloc_counter.c"), "-o",
                    str(library)], check=True)
    return library


@pytest.mark.parametrize("case", [
    ((784, 256, 128, 10), 128, 2, "sgd"),  # shared GEMMs, chunk claims, the next batch's copy
    ((784, 256, 128, 10), 128, 2, "adam"),
    ((784, 256, 128, 10), 128, 1, "sgd"),
    ((64, 128, 64, 10), 32, 2, "sgd"),  # the split step
])
def test_training_steps_allocate_nothing(malloc_counter: Path, case: tuple) -> None:
    run = subprocess.run([sys.executable, "-c", CHILD, str(malloc_counter), repr(case)],
                         env={**os.environ, "LD_PRELOAD": str(malloc_counter)},
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    short_a, long_a, short_b, long_b = map(int, run.stdout.split())
    assert short_a > 0, "the counter saw no allocation at all"
    # A few for the progress callback's Python objects, which a longer fit calls more often.
    per_step = min(long_a - short_a, long_b - short_b) / 200
    assert per_step < 0.05, f"{per_step:.2f} allocations a step ({run.stdout.strip()})"
