"""Training data that must not be copied whole: memory maps and other on-disk arrays.

:meth:`deltaprop.MLP.fit` hands a backend one C-contiguous array of the network's dtype and
dense targets for the whole epoch. That is free for data already in that form — including a
memory map (``np.load(path, mmap_mode="r")``) of the right dtype, whose rows the native epoch
loop then reads straight from the mapping — but converting anything else would copy the whole
data set into memory. Such data trains through :class:`StreamedData` instead: each epoch walks
the epoch's shuffled order in chunks of whole batches, gathers and converts only those rows, and
runs the backend's epoch loop on the chunk with ``shuffle=False``. The batches, and so the
weights, are exactly those of the in-memory path; memory stays at a few chunks, never the data
set (dense targets included: they too are built per chunk).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .errors import TrainingDiverged, diverged
from .shuffle import epoch_order
from .spec import NetSpec
from .validation import as_real_array, as_targets, features_and_largest

# Rows per chunk aim at this many bytes of converted features: large enough that the per-chunk
# call into the backend is noise, small enough to stay well inside any cache of the data set.
CHUNK_BYTES = 8 << 20


def _array_like_dtype(X: Any) -> np.dtype | None:
    try:
        return np.dtype(X.dtype)
    except (AttributeError, TypeError):
        return None


def is_streamed(X: Any, dtype: np.dtype) -> bool:
    """Whether ``X`` should be trained on chunk by chunk instead of converted whole.

    True for a ``np.memmap`` that is not already C-contiguous in ``dtype`` and for 2-D
    array-likes that are not NumPy arrays but index like them (h5py datasets, zarr arrays):
    anything with ``shape``, a NumPy ``dtype`` and ``__getitem__``. Lists and in-memory arrays
    are converted as before.
    """
    if isinstance(X, np.memmap):
        return not (X.flags.c_contiguous and X.dtype == dtype)
    if isinstance(X, (np.ndarray, list, tuple)):
        return False
    shape = getattr(X, "shape", None)
    return (isinstance(shape, tuple) and len(shape) == 2 and hasattr(X, "__getitem__")
            and _array_like_dtype(X) is not None)


class StreamedData:
    """Features read per chunk from an array-like ``X``; targets ``y`` small enough to hold.

    Construction reads the data once, chunk by chunk, to validate every row, so that bad data
    raises before training changes anything (the contract of ``fit``).
    """

    def __init__(self, X: Any, y: Any, spec: NetSpec, batch_size: int) -> None:
        n_in = spec.sizes[0]
        if X.shape[0] == 0:
            raise ValueError(f"X is empty: shape {X.shape}; need at least one sample")
        if X.shape[1] != n_in:
            raise ValueError(f"X has {X.shape[1]} features per sample; the network expects "
                             f"{n_in} (shape {X.shape})")
        kind = _array_like_dtype(X).kind
        if kind not in "biuf":
            raise TypeError(f"X must hold real numbers (bool, int or float); got dtype {X.dtype}")
        self.X, self.spec, self.n = X, spec, int(X.shape[0])
        # Labels are a few bytes a row: read them once. Only their dense form is per chunk.
        self.y = np.asarray(as_real_array(y, "y"))
        if self.y.ndim not in (1, 2) or self.y.shape[0] != self.n:
            raise ValueError(f"y must have {self.n} rows (one per row of X); got shape "
                             f"{self.y.shape}")
        row_bytes = n_in * spec.dtype.itemsize
        batch_size = min(batch_size, self.n)
        self.chunk_rows = max(1, CHUNK_BYTES // (row_bytes * batch_size)) * batch_size
        for lo in range(0, self.n, self.chunk_rows):
            self._block(slice(lo, min(lo + self.chunk_rows, self.n)))

    def _block(self, rows: slice | np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """Converted, validated features and dense targets of ``rows`` (a slice or indices), and
        the features' max |x|."""
        if isinstance(rows, slice):
            name = f"[{rows.start}:{rows.stop}]"
            raw = self.X[rows]
        else:
            # Sorted reads are what h5py requires and what a disk likes; put the rows back in
            # the epoch's order afterwards.
            perm = np.argsort(rows, kind="stable")
            raw = np.empty((len(rows), self.X.shape[1]), dtype=_array_like_dtype(self.X))
            raw[perm] = self.X[rows[perm]]
            name = " (a chunk of the epoch)"
        Xc, largest = features_and_largest(raw, self.spec.sizes[0], self.spec.dtype, "X" + name)
        T = as_targets(self.y[rows], self.spec, Xc.shape[0], "y" + name)
        return Xc, T, largest

    def fit_epoch(self, net: Any, optimizer: Any, batch_size: int, shuffle: bool, seed: int,
                  epoch: int, progress: Callable[[int, float], Any] | None = None) -> float:
        """One epoch with the batches of ``net.fit_epoch`` on the whole data; mean loss."""
        order = epoch_order(self.n, seed, epoch) if shuffle else None
        mean = 0.0  # Σ chunk mean · rows / n, as the backends' epochs (no overflow)
        for lo in range(0, self.n, self.chunk_rows):
            hi = min(lo + self.chunk_rows, self.n)
            Xc, T, largest = self._block(slice(lo, hi) if order is None else order[lo:hi])
            extra = {"x_largest": largest}
            if progress is not None:
                done = mean * self.n  # bind this chunk's offset for the callback below

                def extra_progress(samples: int, loss_sum: float, lo: int = lo,
                                   done: float = done) -> None:
                    progress(lo + samples, done + loss_sum)
                extra["progress"] = extra_progress
            try:
                chunk = net.fit_epoch(Xc, T, optimizer, batch_size, False, seed, epoch, **extra)
            except TrainingDiverged as exc:
                # Batch numbers count from the start of the epoch, not of the chunk.
                raise diverged(epoch, (exc.batch or 0) + lo // batch_size) from None
            mean += chunk * ((hi - lo) / self.n)
            if progress is not None:
                progress(hi, mean * self.n)
        return mean
