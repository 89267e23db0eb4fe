"""Threads and ISA: what dp.set_num_threads, OMP_NUM_THREADS and threadpoolctl control."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

import deltaprop as dp


@pytest.fixture
def restore_threads():
    before = dp.get_num_threads()
    yield
    dp.set_num_threads(before)


def test_set_num_threads_applies_to_other_python_threads(restore_threads) -> None:
    dp.set_num_threads(1)
    seen: list[int] = []
    worker = threading.Thread(target=lambda: seen.append(dp.get_num_threads()))
    worker.start()
    worker.join()
    assert seen == [1]


def test_omp_num_threads_sets_the_default() -> None:
    code = "import deltaprop as dp; print(dp.get_num_threads())"
    env = {**os.environ, "OMP_NUM_THREADS": "3"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "3"


def test_threadpoolctl_limits_native_threads() -> None:
    threadpoolctl = pytest.importorskip("threadpoolctl")
    code = ("import deltaprop as dp, threadpoolctl\n"
            "with threadpoolctl.threadpool_limits(1, user_api='openmp'):\n"
            "    print(dp.get_num_threads())")
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=60)
    assert threadpoolctl is not None and out.stdout.strip() == "1"


@pytest.mark.parametrize("bad", [0, -1])
def test_bad_thread_counts_are_refused(bad: int) -> None:
    with pytest.raises(ValueError, match=">= 1"):
        dp.set_num_threads(bad)


def test_cpu_info_names_the_isa_in_use() -> None:
    info = dp.cpu_info()
    assert info["isa"] in info["isas_supported"]
    assert "generic" in info["isas_supported"]


def test_deltaprop_isa_environment_forces_a_path() -> None:
    code = "import deltaprop as dp; print(dp.cpu_info()['isa'])"
    env = {**os.environ, "DELTAPROP_ISA": "generic"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "generic"


def test_unknown_deltaprop_isa_is_a_clear_import_error() -> None:
    code = "import deltaprop"
    env = {**os.environ, "DELTAPROP_ISA": "sse9"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode != 0 and "unknown ISA 'sse9'" in out.stderr


def test_a_team_smaller_than_asked_for_still_computes_every_output() -> None:
    # OMP_THREAD_LIMIT=1 gives each parallel region one thread, whatever deltaprop asks for: the
    # column chunks owned by the missing threads must still be computed (by the one there is).
    # 512 columns over 3 threads read A in place and split by columns, in chunks.
    code = ("import numpy as np, deltaprop as dp\n"
            "from deltaprop import _native\n"
            "rng = np.random.default_rng(0)\n"
            "A = rng.random((128, 784), dtype=np.float32)\n"
            "W = rng.random((784, 512), dtype=np.float32)\n"
            "dp.set_num_threads(3)\n"
            "got = _native.forward_layer(A, W, None, 'identity', 0.0)\n"
            "want = A.astype(np.float64) @ W.astype(np.float64)\n"
            "print(float(np.abs(got - want).max() / np.abs(want).max()))")
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=60)
    assert float(out.stdout) < 1e-5
