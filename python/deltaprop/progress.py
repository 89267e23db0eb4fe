"""The progress bars of ``MLP.fit(progress=True)``; tqdm is imported only when one is asked for.

One bar per epoch, as Keras draws them: it fills with samples, tqdm shows the rate in samples/s,
and the postfix carries the running training loss, then the epoch's loss, validation loss and
score when the epoch ends. The native epoch loop feeds it at most every 0.1 s, so a bar costs
nothing measurable however small the batches. ``tqdm.auto`` picks the widget in Jupyter and the
text bar elsewhere.
"""

from __future__ import annotations

from typing import Any

from .history import History


class ProgressBar:
    """Per-epoch tqdm bars for a ``fit`` of ``epochs`` epochs over ``n_samples`` samples."""

    def __init__(self, epochs: int, n_samples: int) -> None:
        try:
            import tqdm as _  # noqa: F401 (the package itself: a stale tqdm.auto may be cached)
            from tqdm.auto import tqdm
        except ImportError:
            raise ImportError("progress=True needs tqdm: pip install tqdm "
                              "(or pip install 'deltaprop[progress]')") from None
        self._tqdm = tqdm
        self.epochs = epochs
        self.n_samples = n_samples
        self.epoch = 0  # epochs finished
        self.shown = 0  # samples of the current epoch already on the bar
        self.bar: Any = None

    def _current(self) -> Any:
        if self.bar is None:
            width = len(str(self.epochs))
            self.bar = self._tqdm(total=self.n_samples, unit="sample", unit_scale=True,
                                  desc=f"epoch {self.epoch + 1:>{width}}/{self.epochs}",
                                  leave=True, dynamic_ncols=True)
        return self.bar

    def batch_done(self, samples: int, loss_sum: float) -> None:
        bar = self._current()
        bar.update(samples - self.shown)
        self.shown = samples
        bar.set_postfix(loss=f"{loss_sum / max(samples, 1):.4g}", refresh=False)

    def epoch_done(self, history: History) -> None:
        bar = self._current()
        bar.update(self.n_samples - self.shown)  # backends may skip the last call
        shown = {"loss": f"{history.loss[-1]:.4g}"}
        if history.val_loss:
            shown.update(val_loss=f"{history.val_loss[-1]:.4g}",
                         val_score=f"{history.val_score[-1]:.4g}")
        bar.set_postfix(shown, refresh=False)
        bar.close()
        self.bar, self.epoch, self.shown = None, self.epoch + 1, 0

    def close(self) -> None:
        if self.bar is not None:  # an epoch cut short by an error or Ctrl-C
            self.bar.close()
            self.bar = None
