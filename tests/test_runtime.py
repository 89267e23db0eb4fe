"""Threads and ISA: what dp.set_num_threads, OMP_NUM_THREADS and threadpoolctl control."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import deltaprop as dp


def run_python(code: str, check: bool = True, **env: str) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter with `env` added to the environment."""
    return subprocess.run([sys.executable, "-c", code], env={**os.environ, **env},
                          capture_output=True, text=True, check=check, timeout=60)


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
    out = run_python(code, OMP_NUM_THREADS="3")
    assert out.stdout.strip() == "3"


def test_threadpoolctl_limits_native_threads() -> None:
    threadpoolctl = pytest.importorskip("threadpoolctl")
    code = ("import deltaprop as dp, threadpoolctl\n"
            "with threadpoolctl.threadpool_limits(1, user_api='openmp'):\n"
            "    print(dp.get_num_threads())")
    out = run_python(code, OMP_NUM_THREADS="2")
    assert threadpoolctl is not None and out.stdout.strip() == "1"


def test_threadpoolctl_limits_native_threads_after_set_num_threads() -> None:
    # set_num_threads once overrode OpenMP's setting for good, and with it threadpoolctl's limit.
    threadpoolctl = pytest.importorskip("threadpoolctl")
    code = ("import deltaprop as dp, threadpoolctl\n"
            "dp.set_num_threads(2)\n"
            "with threadpoolctl.threadpool_limits(1, user_api='openmp'):\n"
            "    print(dp.get_num_threads())\n"
            "print(dp.get_num_threads())")
    out = run_python(code, OMP_NUM_THREADS="2")
    assert threadpoolctl is not None and out.stdout.split() == ["1", "2"]


def test_numpy_integers_set_the_thread_count(restore_threads) -> None:
    dp.set_num_threads(np.int64(1))
    assert dp.get_num_threads() == 1


@pytest.mark.parametrize("bad", [0, -1])
def test_bad_thread_counts_are_refused(bad: int) -> None:
    with pytest.raises(ValueError, match=">= 1"):
        dp.set_num_threads(bad)


@pytest.mark.parametrize("per_processor", [17, 10**6, 2**40])
def test_thread_counts_beyond_sixteen_a_processor_are_refused(per_processor: int,
                                                              restore_threads) -> None:
    # Once accepted: libgomp then asked for thousands of threads, and exits where it cannot
    # make them.
    with pytest.raises(ValueError, match="16 a processor"):
        dp.set_num_threads(per_processor * (os.cpu_count() or 1))


@pytest.mark.parametrize("bad", [1.0, "2", True, np.bool_(True)])
def test_thread_counts_that_are_not_integers_are_refused(bad) -> None:
    with pytest.raises(TypeError, match="must be an int"):
        dp.set_num_threads(bad)


def test_a_huge_omp_num_threads_is_capped() -> None:
    code = ("import numpy as np, deltaprop as dp\n"
            "a = np.ones((512, 512), np.float32)\n"
            "out = dp._native.forward_layer(a, a, None, 'identity', 0.0)\n"
            "print(dp.get_num_threads(), dp._native.thread_cap(), float(out[0, 0]))")
    out = run_python(code, OMP_NUM_THREADS="100000")
    threads, cap, value = out.stdout.split()
    assert threads == cap and float(value) == 512.0


def test_cpu_info_names_the_isa_in_use() -> None:
    info = dp.cpu_info()
    assert info["isa"] in info["isas_supported"]
    assert "generic" in info["isas_supported"]


def test_deltaprop_isa_environment_forces_a_path() -> None:
    code = "import deltaprop as dp; print(dp.cpu_info()['isa'])"
    out = run_python(code, DELTAPROP_ISA="generic")
    assert out.stdout.strip() == "generic"


def test_unknown_deltaprop_isa_is_a_clear_import_error() -> None:
    code = "import deltaprop"
    out = run_python(code, check=False, DELTAPROP_ISA="sse9")
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
    out = run_python(code, OMP_THREAD_LIMIT="1")
    assert float(out.stdout) < 1e-5
