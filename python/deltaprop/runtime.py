"""What the native runtime is doing: threads and the instruction set in use."""

from __future__ import annotations

import operator

import numpy as np

from . import _native


def set_num_threads(n: int) -> None:
    """Use ``n`` OpenMP threads in native kernels, in every Python thread (results do not
    depend on it). At most 16 a processor. As with PyTorch, ``threadpoolctl``'s limits and
    ``omp_set_num_threads`` taken later apply in the thread that takes them."""
    if isinstance(n, (bool, np.bool_)):
        raise TypeError("number of threads must be an int; got bool")
    try:
        n = operator.index(n)  # Python and NumPy integers
    except TypeError:
        raise TypeError(f"number of threads must be an int; got {type(n).__name__}") from None
    if not 1 <= n <= _native.thread_cap():  # also those beyond a C int, which pybind11 refuses
        raise ValueError(f"number of threads must be >= 1 and <= {_native.thread_cap()} "
                         f"(16 a processor); got {n}")
    _native.set_num_threads(n)


def get_num_threads() -> int:
    """The number of OpenMP threads native kernels use (``OMP_NUM_THREADS`` by default)."""
    return int(_native.get_num_threads())


def cpu_info() -> dict:
    """The native runtime: ``{"isa": "avx2", "isas_supported": [...], "openmp": ..., ...}``."""
    return dict(_native.cpu_info())
