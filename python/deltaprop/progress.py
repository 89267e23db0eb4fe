"""The progress bar of ``MLP.fit(progress=True)``; tqdm is imported only when one is asked for."""

from __future__ import annotations

from .history import History


class ProgressBar:
    """A tqdm bar over all samples of a ``fit``, fed by the backend's per-batch callback."""

    def __init__(self, epochs: int, n_samples: int) -> None:
        try:
            from tqdm import tqdm
        except ImportError:
            raise ImportError("progress=True needs tqdm: pip install tqdm "
                              "(or pip install 'deltaprop[progress]')") from None
        self.n_samples = n_samples
        self.epoch = 0
        self.shown = 0  # samples of the current epoch already on the bar
        self.bar = tqdm(total=epochs * n_samples, unit="sample", unit_scale=True, desc="fit")

    def batch_done(self, samples: int, loss_sum: float) -> None:
        self.bar.update(samples - self.shown)
        self.shown = samples
        self.bar.set_postfix(epoch=self.epoch + 1, loss=f"{loss_sum / samples:.4g}",
                             refresh=False)

    def epoch_done(self, history: History) -> None:
        self.bar.update(self.n_samples - self.shown)  # backends may skip the last call
        self.epoch, self.shown = self.epoch + 1, 0
        shown = {"epoch": self.epoch, "loss": f"{history.loss[-1]:.4g}"}
        if history.val_loss:
            shown.update(val_loss=f"{history.val_loss[-1]:.4g}",
                         val_score=f"{history.val_score[-1]:.4g}")
        self.bar.set_postfix(shown)

    def close(self) -> None:
        self.bar.close()
