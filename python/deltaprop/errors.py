"""Exceptions deltaprop raises beyond the built-in ValueError/TypeError."""

from __future__ import annotations


class TrainingDiverged(FloatingPointError):
    """A batch's loss, or the update it would make, was not finite during training.

    The update of that batch is not applied (or undone), so the network keeps the weights of
    the last good step. ``epoch`` and ``batch`` say where it happened in ``fit`` (None from
    ``train_step``); ``step`` is the optimizer step a ``train_step`` call would have taken
    (None from ``fit``).
    """

    def __init__(self, message: str, epoch: int | None = None, batch: int | None = None,
                 step: int | None = None):
        super().__init__(message)
        self.epoch = epoch
        self.batch = batch
        self.step = step


def diverged(epoch: int, batch: int) -> TrainingDiverged:
    """The error both backends raise when batch ``batch`` of epoch ``epoch`` diverges."""
    return TrainingDiverged(
        f"training diverged in epoch {epoch}, batch {batch}: the loss or the update was not "
        "finite; the network keeps the weights of the last good step (try a lower learning "
        "rate)",
        epoch=epoch, batch=batch)


def diverged_step(step: int) -> TrainingDiverged:
    """The error :meth:`deltaprop.MLP.train_step` raises when optimizer step ``step`` diverges."""
    return TrainingDiverged(
        f"training diverged in train_step, optimizer step {step}: the loss or the update was "
        "not finite; the network keeps its weights and optimizer state (try a lower learning "
        "rate)",
        step=step)
