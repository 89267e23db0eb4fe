"""What the native runtime is doing: threads and the instruction set in use."""

from __future__ import annotations

from . import _native


def set_num_threads(n: int) -> None:
    """Use ``n`` OpenMP threads in native kernels (results do not depend on it)."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"number of threads must be an int; got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"number of threads must be >= 1; got {n}")
    _native.set_num_threads(n)


def get_num_threads() -> int:
    """The number of OpenMP threads native kernels use (``OMP_NUM_THREADS`` by default)."""
    return int(_native.get_num_threads())


def cpu_info() -> dict:
    """The native runtime: ``{"isa": "avx2", "isas_supported": [...], "openmp": ..., ...}``."""
    return dict(_native.cpu_info())
