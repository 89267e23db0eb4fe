"""What :meth:`deltaprop.MLP.fit` records, one entry per epoch."""

from __future__ import annotations

import math
import os
from typing import Any


class History:
    """Per-epoch training record returned by :meth:`deltaprop.MLP.fit`.

    Attributes
    ----------
    loss : list of float
        Mean per-sample training loss of each epoch, each batch measured before its update.
    val_loss, val_score : list of float
        Loss and score (accuracy, or R² for mse) on ``validation_data`` after each epoch;
        empty when ``fit`` got no validation data.
    epoch_time : list of float
        Wall-clock seconds spent training in each epoch (validation excluded).
    samples_per_second : list of float
        Training throughput of each epoch.
    lr : list of float
        The learning rate each epoch trained with (it changes under an ``lr_schedule``).
    """

    _FIELDS = ("loss", "val_loss", "val_score", "epoch_time", "samples_per_second", "lr")

    def __init__(self) -> None:
        self.loss: list[float] = []
        self.val_loss: list[float] = []
        self.val_score: list[float] = []
        self.epoch_time: list[float] = []
        self.samples_per_second: list[float] = []
        self.lr: list[float] = []

    @property
    def epochs(self) -> int:
        """The number of epochs recorded."""
        return len(self.loss)

    def record(self, loss: float, seconds: float, n_samples: int,
               val_loss: float | None = None, val_score: float | None = None,
               lr: float | None = None) -> None:
        """Append one epoch's numbers."""
        self.loss.append(float(loss))
        self.epoch_time.append(float(seconds))
        # A clock too coarse to see the epoch must not divide by zero.
        self.samples_per_second.append(n_samples / seconds if seconds > 0 else math.inf)
        if val_loss is not None:
            self.val_loss.append(float(val_loss))
        if val_score is not None:
            self.val_score.append(float(val_score))
        if lr is not None:
            self.lr.append(float(lr))

    def as_dict(self) -> dict[str, list[float]]:
        """Copies of the per-epoch lists, keyed by name (``"loss"``, ``"val_loss"``, ...)."""
        return {name: list(getattr(self, name)) for name in self._FIELDS}

    def plot(self, path: str | os.PathLike | None = None) -> Any:
        """Draw the training curves with matplotlib; save a PNG when ``path`` is given.

        The left panel shows the training loss and, when recorded, the validation loss per
        epoch; the right panel the validation score (accuracy or R²) or, without validation
        data, the throughput. Needs matplotlib (``pip install matplotlib``).

        Parameters
        ----------
        path : str or path-like, optional
            Where to write the figure as PNG. Without one the figure is drawn with pyplot, so
            ``plt.show()`` (or Jupyter) displays it.

        Returns
        -------
        matplotlib.figure.Figure
        """
        from .plotting import plot_history

        return plot_history(self, path)

    def __len__(self) -> int:
        return self.epochs

    def __repr__(self) -> str:
        parts = [f"epochs={self.epochs}"]
        for name in ("loss", "val_loss", "val_score"):
            values = getattr(self, name)
            if values:
                parts.append(f"{name}={values[-1]:.6g}")
        return f"History({', '.join(parts)})"
