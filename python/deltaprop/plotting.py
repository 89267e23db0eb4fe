"""Training curves of a :class:`~deltaprop.History` (``History.plot``); needs matplotlib.

matplotlib is optional: it is imported only here, only when a plot is asked for.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .history import History


def _matplotlib() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ImportError("History.plot needs matplotlib: pip install matplotlib "
                          "(or pip install 'deltaprop[plot]')") from None
    return matplotlib


def plot_history(history: History, path: str | os.PathLike | None = None) -> Any:
    """Loss curves on the left, validation score (or throughput) on the right."""
    _matplotlib()
    if path is None:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(10, 4))
    else:
        # Without pyplot: no GUI backend is touched and no figure lingers in pyplot's registry.
        from matplotlib.figure import Figure

        fig = Figure(figsize=(10, 4))
    ax_loss, ax_right = fig.subplots(1, 2)
    epochs = list(range(1, history.epochs + 1))
    ax_loss.plot(epochs, history.loss, marker=".", label="training loss")
    if history.val_loss:
        ax_loss.plot(epochs[:len(history.val_loss)], history.val_loss, marker=".",
                     label="validation loss")
    positive = [v for v in history.loss + history.val_loss if v == v]
    if positive and min(positive) > 0 and max(positive) / min(positive) > 20:
        ax_loss.set_yscale("log")  # losses that fall by orders of magnitude read better in log
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_loss.legend()
    if history.val_score:
        ax_right.plot(epochs[:len(history.val_score)], history.val_score, marker=".",
                      color="C2", label="validation score")
        ax_right.set(ylabel="score (accuracy or R²)", title="validation score")
    else:
        ax_right.plot(epochs, history.samples_per_second, marker=".", color="C3",
                      label="throughput")
        ax_right.set(ylabel="samples / s", title="training throughput")
        ax_right.set_ylim(bottom=0)
    ax_right.set_xlabel("epoch")
    ax_right.legend()
    for ax in (ax_loss, ax_right):
        ax.grid(True, alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    if path is not None:
        fig.savefig(os.fspath(path), format="png", dpi=100)
    return fig
