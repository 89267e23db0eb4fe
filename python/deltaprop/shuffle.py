"""The epoch shuffle, defined so that every backend computes the same order.

Sample ``i`` of epoch ``e`` gets the key ``splitmix64(splitmix64(splitmix64(seed) ^ e) + i·φ)``
(φ = 0x9E3779B97F4A7C15) and the epoch visits samples in increasing key order, ties by index.
A counter-based hash instead of a sequential generator lets NumPy compute it vectorised here
and C++ compute it in the native epoch loop (``csrc/epoch_order.cpp``) with identical results.
"""

from __future__ import annotations

import numpy as np

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def splitmix64(z: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser, elementwise on uint64 (wrapping arithmetic)."""
    z = z + GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order (int64 indices into ``range(n)``) in which epoch ``epoch`` visits the samples."""
    with np.errstate(over="ignore"):
        stream = splitmix64(np.array([seed % 2**64], dtype=np.uint64))
        stream = splitmix64(stream ^ np.uint64(epoch % 2**64))
        keys = splitmix64(stream + np.arange(n, dtype=np.uint64) * GOLDEN)
    return np.argsort(keys, kind="stable").astype(np.int64)
