"""The epoch loop behind :meth:`deltaprop.MLP.fit` (single process; MPI is in ``distributed``).

Each epoch is one backend call (``fit_epoch``: the whole epoch in C++ on the native backend);
around it sit what Python users expect of a training loop: a learning-rate schedule set before
the epoch, validation, the :class:`~deltaprop.History`, a progress bar, and callbacks that may
stop training. Everything is validated before the first step, so a bad argument changes nothing.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from .callbacks import CallbackList
from .errors import TrainingDiverged
from .history import History
from .metrics import score_outputs
from .optim import SGD
from .progress import ProgressBar
from .schedules import scheduled_lr
from .streaming import StreamedData, is_streamed
from .validation import check_positive_int

if TYPE_CHECKING:
    from .mlp import MLP


class _InMemory:
    """Data the backend can take whole: validated arrays of the network's dtype."""

    def __init__(self, model: MLP, X: Any, y: Any) -> None:
        self.X, self.T, self.X_largest = model._data_and_largest(X, y)
        self.n = self.X.shape[0]

    def fit_epoch(self, net: Any, optimizer: Any, batch_size: int, shuffle: bool, seed: int,
                  epoch: int, progress: Any = None) -> float:
        extra = {} if progress is None else {"progress": progress}
        return net.fit_epoch(self.X, self.T, optimizer, batch_size, shuffle, seed, epoch,
                             x_largest=self.X_largest, **extra)


def training_data(model: MLP, X: Any, y: Any, batch_size: int) -> _InMemory | StreamedData:
    """``(X, y)`` validated, in the form that trains without copying a memory-mapped ``X``."""
    if is_streamed(X, model.dtype):
        return StreamedData(X, y, model.spec, batch_size)
    return _InMemory(model, X, y)


def fit(model: MLP, X: Any, y: Any, epochs: int, batch_size: int, optimizer: Any,
        shuffle: bool, validation_data: Any, progress: bool, callback: Any,
        lr_schedule: Any) -> History:
    """Train ``model``; the arguments are those of :meth:`deltaprop.MLP.fit`."""
    epochs = check_positive_int(epochs, "epochs")
    batch_size = check_positive_int(batch_size, "batch_size")
    optimizer = SGD(lr=0.01) if optimizer is None else model._check_optimizer(optimizer)
    if not isinstance(shuffle, (bool, np.bool_)):
        raise TypeError(f"shuffle must be a bool; got {type(shuffle).__name__}")
    data = training_data(model, X, y, batch_size)
    batch_size = min(batch_size, data.n)
    val = None
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise TypeError("validation_data must be a pair (X_val, y_val)")
        val = model._data(*validation_data, prefix="validation_data ")
    callbacks = CallbackList(callback)
    base_lr = optimizer.lr
    if lr_schedule is not None:
        if not callable(lr_schedule):
            raise TypeError(f"lr_schedule must be callable; got {type(lr_schedule).__name__}")
        scheduled_lr(lr_schedule, model._epochs_seen, base_lr)  # fail before training
    bar = ProgressBar(epochs, data.n) if progress else None

    net, spec = model._net, model.spec
    model._use(optimizer)
    history = History()
    try:
        callbacks.train_begin(model, history)
        for epoch in range(epochs):
            if lr_schedule is not None:
                optimizer.lr = scheduled_lr(lr_schedule, model._epochs_seen, base_lr)
            extra = {} if bar is None else {"progress": bar.batch_done}
            start = time.perf_counter()
            try:
                loss = data.fit_epoch(net, optimizer, batch_size, bool(shuffle), model._seed,
                                      model._epochs_seen, **extra)
            except TrainingDiverged as exc:
                exc.history = history  # the epochs that did finish
                raise
            finally:
                # Batches before a divergence were applied: the epoch is spent either way.
                model._epochs_seen += 1
            seconds = time.perf_counter() - start
            val_loss = val_score = None
            if val is not None:
                val_loss = net.loss(*val)
                val_score = score_outputs(spec, net.forward(val[0]), val[1])
            history.record(loss, seconds, data.n, val_loss, val_score, lr=optimizer.lr)
            if bar is not None:
                bar.epoch_done(history)
            if callbacks.epoch_end(epoch, history, model):
                break
        callbacks.train_end(model, history)
    finally:
        if lr_schedule is not None:
            optimizer.lr = base_lr  # a schedule's rates are per fit call; the base rate stays
        if bar is not None:
            bar.close()
    return history


def distributed_callback(model: MLP, callback: Any, lr_schedule: Any, optimizer: Any) -> Any:
    """Adapt callbacks and a schedule to the ``callback(epoch, history)`` of ``distributed``.

    The schedule's rate for the next epoch is set at the end of the previous one (the first
    before the call); returns ``(callback, finish)`` where ``finish(history)`` runs after fit.
    """
    callbacks = CallbackList(callback)
    base_lr = None if optimizer is None else optimizer.lr
    if lr_schedule is not None:
        if optimizer is None:
            raise ValueError("lr_schedule needs an explicit optimizer with comm=")
        optimizer.lr = scheduled_lr(lr_schedule, model._epochs_seen, base_lr)
    started = []

    def on_epoch(epoch: int, history: History) -> bool:
        if not started:
            started.append(True)
            callbacks.train_begin(model, history)
        if lr_schedule is not None:
            history.lr.append(optimizer.lr)
            optimizer.lr = scheduled_lr(lr_schedule, model._epochs_seen, base_lr)
        return callbacks.epoch_end(epoch, history, model)

    def finish(history: History | None) -> None:
        if base_lr is not None:
            optimizer.lr = base_lr
        if history is not None:
            callbacks.train_end(model, history)

    return (on_epoch if callbacks or lr_schedule is not None else None), finish
