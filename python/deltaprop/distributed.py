"""Data-parallel training over MPI: ``MLP.fit(X, y, ..., comm=MPI.COMM_WORLD)``.

Every rank runs the same script with the same dataset (a memory map is fine: a rank reads only
the rows it uses) and holds a whole copy of the network. Each global batch of ``batch_size``
rows, in the order of :func:`deltaprop.shuffle.epoch_order`, is cut into one contiguous slice
per rank. A rank computes the mean gradient of its slice in the backend
(``gradients_into``), scales it by ``slice_rows / batch_rows``, and one in-place
``Allreduce(SUM)`` over a single flat buffer turns the slices' gradients into the batch's mean
gradient on every rank; every rank then applies the same update (``apply_gradients``). Since
the ranks start from rank 0's weights, optimizer state, seed and epoch counter, they stay
identical, and training equals single-process training up to the rounding of the sum.

Failures are collective: the flat buffer carries two extra numbers, the slice's loss sum and an
error flag, so a rank whose slice raises (bad data, out of memory) still joins the Allreduce,
and then every rank raises instead of leaving the others waiting forever.

``DELTAPROP_MPI_CHECK=1`` (or ``check_consistency=True``) checksums the weights of every rank
after every step and raises if any differ: a debugging aid that costs a copy of the weights.
"""

from __future__ import annotations

import builtins
import os
import time
import zlib
from typing import Any, Callable

import numpy as np

from .errors import TrainingDiverged, diverged
from .history import History
from .metrics import score_outputs
from .optim import SGD, Adam, Optimizer
from .progress import ProgressBar
from .shuffle import epoch_order
from .validation import as_features, as_real_array, as_targets, cast, check_positive_int

CHECK_ENV = "DELTAPROP_MPI_CHECK"
_MOMENTS = ("m_weights", "m_biases", "v_weights", "v_biases")


def slice_bounds(rows: int, size: int, rank: int) -> tuple[int, int]:
    """The contiguous part ``[lo, hi)`` of a batch of ``rows`` rows that ``rank`` computes.

    Slices differ by at most one row; with fewer rows than ranks some slices are empty.
    """
    return rows * rank // size, rows * (rank + 1) // size


def _agree(comm: Any, error: BaseException | None, stop: bool = False) -> bool:
    """Collective: raise on every rank if any rank has an error; return whether any stops.

    The failing rank re-raises its own exception; the others raise the same built-in type (or
    RuntimeError) naming the rank and its message.
    """
    reports = comm.allgather((None if error is None else (type(error).__name__, str(error)),
                              bool(stop)))
    failed = [(rank, report) for rank, (report, _) in enumerate(reports) if report is not None]
    if failed:
        if error is not None:
            raise error
        rank, (name, message) = failed[0]
        text = f"rank {rank} of {comm.Get_size()} failed with {name}: {message}"
        cls = getattr(builtins, name, None)
        try:
            exc = cls(text) if isinstance(cls, type) and issubclass(cls, Exception) else None
        except Exception:  # a built-in exception whose constructor wants other arguments
            exc = None
        raise exc if isinstance(exc, Exception) else RuntimeError(text)
    return any(s for _, s in reports)


def _settings(model: Any, X: np.ndarray, y: np.ndarray, comm: Any, epochs: Any,
              batch_size: Any, optimizer: Any, shuffle: Any, callback: Any) -> dict:
    """Validate this rank's arguments and its share of the data; no communication."""
    spec = model.spec
    Xa, ya = as_real_array(X, "X"), as_real_array(y, "y")
    if Xa.ndim != 2 or Xa.shape[0] == 0 or Xa.shape[1] != spec.sizes[0]:
        raise ValueError(f"X must have shape (n_samples > 0, {spec.sizes[0]}); got {Xa.shape}")
    n = Xa.shape[0]
    if ya.ndim not in (1, 2) or ya.shape[0] != n:
        raise ValueError(f"y must have {n} rows (one per row of X); got shape {ya.shape}")
    if not isinstance(optimizer, (SGD, Adam)):
        raise TypeError("optimizer must be a deltaprop.SGD or deltaprop.Adam; got "
                        f"{type(optimizer).__name__}")
    if not isinstance(shuffle, (bool, np.bool_)):
        raise TypeError(f"shuffle must be a bool; got {type(shuffle).__name__}")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable; got {type(callback).__name__}")
    # Each rank reads and checks one block of rows, so together they check every row once.
    lo, hi = slice_bounds(n, comm.Get_size(), comm.Get_rank())
    if hi > lo:
        try:
            as_features(Xa[lo:hi], spec.sizes[0], spec.dtype, f"X[{lo}:{hi}]")
            as_targets(ya[lo:hi], spec, hi - lo, f"y[{lo}:{hi}]")
        except ValueError as exc:
            raise ValueError(f"{exc} (rows counted from row {lo} of the whole array)") from None
    return {"X": Xa, "y": ya, "n": n, "epochs": check_positive_int(epochs, "epochs"),
            "batch_size": min(check_positive_int(batch_size, "batch_size"), n),
            "shuffle": bool(shuffle), "optimizer": optimizer}


def _broadcast_state(model: Any, comm: Any) -> None:
    """Give every rank rank 0's weights, optimizer state, seed and epoch counter."""
    net = model._net
    W, b = net.get_weights()
    for a in W + (b or []):
        comm.Bcast(a, root=0)
    net.set_weights(W, b)
    state = net.optimizer_state()
    shape = comm.bcast({k: len(state[k]) for k in _MOMENTS} | {"step": state["step"]}, root=0)
    for k in _MOMENTS:
        if len(state[k]) != shape[k]:  # this rank's optimizer differs: take rank 0's layout
            state[k] = [np.zeros_like(p) for p in (W if k.endswith("weights") else b or [])]
        for a in state[k]:
            comm.Bcast(a, root=0)
    state["step"] = shape["step"]
    net.set_optimizer_state(state)
    model._seed, model._epochs_seen = comm.bcast((model._seed, model._epochs_seen), root=0)


def _check_same_weights(comm: Any, net: Any, epoch: int, batch: int) -> None:
    """Raise on every rank if the ranks' weights are not bitwise identical."""
    W, b = net.get_weights()
    crc = 0
    for a in W + (b or []):
        crc = zlib.crc32(np.ascontiguousarray(a).tobytes(), crc)
    sums = comm.allgather(crc)
    if len(set(sums)) > 1:
        raise RuntimeError(f"weights differ across ranks after epoch {epoch}, batch {batch}: "
                           f"checksums by rank {[f'{s:08x}' for s in sums]}")


def fit_distributed(model: Any, X: Any, y: Any, comm: Any, epochs: int = 10,
                    batch_size: int = 128, optimizer: Optimizer | None = None,
                    shuffle: bool = True, validation_data: tuple[Any, Any] | None = None,
                    progress: bool = False,
                    callback: Callable[[int, History], bool | None] | None = None,
                    check_consistency: bool | None = None) -> History:
    """Data-parallel :meth:`deltaprop.MLP.fit` over the ranks of the mpi4py communicator ``comm``.

    Every rank must call it with the same arguments; ``batch_size`` is the global batch.
    The arguments mean what they mean in ``MLP.fit``; the returned History (and any
    exception) is the same on every rank. ``progress`` shows a bar on rank 0 only.
    ``check_consistency`` (default: environment variable ``DELTAPROP_MPI_CHECK=1``) verifies
    after every step that all ranks hold bitwise identical weights.

    Raises
    ------
    TrainingDiverged
        On every rank, when a batch's loss is not finite (that update is not applied).
    ValueError, TypeError, RuntimeError
        On every rank, when any rank's arguments or data are bad or any rank's step fails.
    """
    from mpi4py import MPI

    if check_consistency is None:
        check_consistency = os.environ.get(CHECK_ENV, "") not in ("", "0")
    rank, size = comm.Get_rank(), comm.Get_size()
    error: Exception | None = None
    s: dict = {}
    val = bar = None
    try:
        optimizer = SGD(lr=0.01) if optimizer is None else optimizer
        s = _settings(model, X, y, comm, epochs, batch_size, optimizer, shuffle, callback)
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise TypeError("validation_data must be a pair (X_val, y_val)")
            val = model._data(*validation_data, prefix="validation_data ")
        if progress and rank == 0:
            bar = ProgressBar(s["epochs"], s["n"])
    except Exception as exc:
        error = exc
    _agree(comm, error)
    # Ranks called with different data or settings would silently train different models.
    mine = (s["n"], s["epochs"], s["batch_size"], s["shuffle"], repr(optimizer), repr(model.spec))
    if len(set(comm.allgather(mine))) > 1:
        raise ValueError("every rank must call fit with the same data shape, epochs, "
                         "batch_size, shuffle, optimizer and network; got differing values")

    net, spec, n, B = model._net, model.spec, s["n"], s["batch_size"]
    Xa, ya = s["X"], s["y"]
    model._use(optimizer)
    _broadcast_state(model, comm)
    P = net.n_parameters
    buf = np.zeros(P + 2, dtype=spec.dtype)  # gradient, then [slice loss sum, error flag]
    grad = buf[:P]
    history = History()
    if check_consistency:
        _check_same_weights(comm, net, model._epochs_seen, -1)
    try:
        for epoch in range(s["epochs"]):
            start_time = time.perf_counter()
            epoch_id = model._epochs_seen
            order = epoch_order(n, model._seed, epoch_id) if s["shuffle"] else np.arange(n)
            total = 0.0
            try:
                for batch, start in enumerate(range(0, n, B)):
                    rows = order[start:start + B]
                    lo, hi = slice_bounds(len(rows), size, rank)
                    error = None
                    try:
                        if hi > lo:
                            idx = rows[lo:hi]
                            Xs = cast(Xa[idx], spec.dtype)
                            loss = net.gradients_into(Xs, as_targets(ya[idx], spec, hi - lo), grad)
                            grad *= spec.dtype.type((hi - lo) / len(rows))
                            buf[P] = loss * (hi - lo)
                        else:  # nothing to compute: contribute zeros
                            buf[:P + 1] = 0
                        buf[P + 1] = 0
                    except Exception as exc:
                        error = exc
                        buf[:] = 0
                        buf[P + 1] = 1
                    comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
                    if buf[P + 1] != 0:
                        _agree(comm, error)
                    batch_loss = float(buf[P])
                    if not np.isfinite(batch_loss):
                        raise diverged(epoch_id, batch)
                    # Every rank holds the same sum, so every rank undoes it and raises alike.
                    if not net.apply_gradients(grad, optimizer):
                        raise diverged(epoch_id, batch)
                    total += batch_loss
                    if bar is not None:
                        bar.batch_done(start + len(rows), total)
                    if check_consistency:
                        _check_same_weights(comm, net, epoch_id, batch)
            except TrainingDiverged as exc:
                exc.history = history  # the epochs that did finish
                raise
            finally:
                model._epochs_seen += 1  # batches before a failure were applied
            seconds = time.perf_counter() - start_time
            val_loss = val_score = None
            if val is not None:  # every rank holds the same weights: no communication needed
                val_loss = net.loss(*val)
                val_score = score_outputs(spec, net.forward(val[0]), val[1])
            history.record(total / n, seconds, n, val_loss, val_score)
            if bar is not None:
                bar.epoch_done(history)
            error, stop = None, False
            try:
                stop = bool(callback(epoch, history)) if callback is not None else False
            except Exception as exc:
                error = exc
            # A callback that stops (or fails) on one rank stops every rank.
            if _agree(comm, error, stop):
                break
    finally:
        if bar is not None:
            bar.close()
    return history
