"""Per-epoch callbacks for :meth:`deltaprop.MLP.fit`, and early stopping.

``fit(..., callback=cb)`` takes one callback or a list of them. After every epoch each is
called as ``cb(epoch, history, net)`` (or ``cb(epoch, history)`` when it takes two
arguments): ``epoch`` counts from 0 within this ``fit`` call, ``history`` is the
:class:`~deltaprop.History` so far and ``net`` the :class:`~deltaprop.MLP` being trained.
Returning True — or raising :class:`StopTraining` — ends training after that epoch; ``fit``
still returns the history.

Subclasses of :class:`Callback` also hear when training begins and ends, which is what
:class:`EarlyStopping` needs to reset itself and to restore the best weights.
"""

from __future__ import annotations

import inspect
import math
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from .history import History
    from .mlp import MLP


class StopTraining(Exception):
    """Raise from a callback to end ``fit`` after the current epoch (not an error)."""


class Callback:
    """Base class for callbacks that need more than the per-epoch call."""

    def on_train_begin(self, net: MLP, history: History) -> None:
        """Called once before the first epoch of a ``fit`` call."""

    def on_epoch_end(self, epoch: int, history: History, net: MLP) -> bool | None:
        """Called after every epoch; return True to stop training."""
        return None

    def on_train_end(self, net: MLP, history: History) -> None:
        """Called once when training ends normally (finished or stopped; not on an error)."""

    def __call__(self, epoch: int, history: History, net: MLP) -> bool | None:
        return self.on_epoch_end(epoch, history, net)


class EarlyStopping(Callback):
    """Stop when a monitored quantity has stopped improving.

    Parameters
    ----------
    monitor : {"auto", "loss", "val_loss", "val_score"}
        What to watch. ``"auto"`` watches ``val_loss`` when ``fit`` has validation data and the
        training ``loss`` otherwise. Losses must decrease, ``val_score`` increase.
    patience : int
        Training stops after this many epochs in a row without improvement (as in Keras, 0
        and 1 both stop at the first).
    min_delta : float
        The least change that counts as an improvement.
    restore_best_weights : bool
        When training stops (or runs out of epochs), put back the weights of the best epoch.

    Attributes
    ----------
    best : float
        The best value seen in the current ``fit`` call.
    best_epoch, stopped_epoch : int or None
        The epoch (within the ``fit`` call) of the best value, and the one training stopped
        after (None when it ran to the end).
    """

    _MODES = {"loss": "min", "val_loss": "min", "val_score": "max"}

    def __init__(self, monitor: str = "auto", patience: int = 5, min_delta: float = 0.0,
                 restore_best_weights: bool = False) -> None:
        if monitor != "auto" and monitor not in self._MODES:
            raise ValueError(f"monitor must be 'auto' or one of {list(self._MODES)}; "
                             f"got {monitor!r}")
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"patience must be a non-negative int; got {patience!r}")
        if not isinstance(min_delta, (int, float)) or not min_delta >= 0:
            raise ValueError(f"min_delta must be a non-negative number; got {min_delta!r}")
        self.monitor = monitor
        self.patience = patience
        self.min_delta = float(min_delta)
        self.restore_best_weights = bool(restore_best_weights)
        self._reset()

    def _reset(self) -> None:
        self.best = math.nan
        self.best_epoch: int | None = None
        self.stopped_epoch: int | None = None
        self._wait = 0
        self._best_weights: tuple[list, list | None] | None = None

    def __repr__(self) -> str:
        return (f"EarlyStopping(monitor={self.monitor!r}, patience={self.patience}, "
                f"min_delta={self.min_delta}, restore_best_weights={self.restore_best_weights})")

    def on_train_begin(self, net: MLP, history: History) -> None:
        self._reset()

    def _watched(self, history: History) -> str:
        if self.monitor == "auto":
            return "val_loss" if history.val_loss else "loss"
        if self.monitor.startswith("val_") and not history.val_loss:
            raise ValueError(f"EarlyStopping(monitor={self.monitor!r}) needs fit(..., "
                             "validation_data=...)")
        return self.monitor

    def on_epoch_end(self, epoch: int, history: History, net: MLP) -> bool:
        name = self._watched(history)
        value = getattr(history, name)[-1]
        sign = 1.0 if self._MODES[name] == "min" else -1.0
        # A NaN value never improves; comparing "better by more than min_delta" in one sign.
        if self.best_epoch is None or sign * (self.best - value) > self.min_delta:
            self.best, self.best_epoch, self._wait = value, epoch, 0
            if self.restore_best_weights:
                self._best_weights = net.get_weights()
            return False
        self._wait += 1
        if self._wait >= self.patience:
            self.stopped_epoch = epoch
            return True
        return False

    def on_train_end(self, net: MLP, history: History) -> None:
        if self.restore_best_weights and self._best_weights is not None:
            net.set_weights(*self._best_weights)


def _takes_net(fn: Callable[..., Any]) -> bool:
    """Whether a plain callback takes ``(epoch, history, net)`` rather than ``(epoch, history)``."""
    try:
        inspect.signature(fn).bind(0, None, None)
        return True
    except TypeError:
        return False
    except ValueError:  # builtins without a signature: assume the full form
        return True


class CallbackList:
    """The callbacks of one ``fit`` call, run in order; any one of them can stop training."""

    def __init__(self, callback: Any) -> None:
        if callback is None:
            items: list = []
        elif isinstance(callback, (list, tuple)):
            items = list(callback)
        else:
            items = [callback]
        for cb in items:
            if not callable(cb):
                raise TypeError(f"callback must be callable (or a list of callables); got "
                                f"{type(cb).__name__}")
        self._items = [(cb, isinstance(cb, Callback) or _takes_net(cb)) for cb in items]

    def __bool__(self) -> bool:
        return bool(self._items)

    def train_begin(self, net: MLP, history: History) -> None:
        for cb, _ in self._items:
            if isinstance(cb, Callback):
                cb.on_train_begin(net, history)

    def epoch_end(self, epoch: int, history: History, net: MLP) -> bool:
        """Run every callback (all of them, even after one asks to stop); True to stop."""
        stop = False
        for cb, with_net in self._items:
            try:
                result = cb(epoch, history, net) if with_net else cb(epoch, history)
            except StopTraining:
                result = True
            stop = bool(result) or stop
        return stop

    def train_end(self, net: MLP, history: History) -> None:
        for cb, _ in self._items:
            if isinstance(cb, Callback):
                cb.on_train_end(net, history)
