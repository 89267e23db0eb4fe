"""Learning-rate schedules for :meth:`deltaprop.MLP.fit` (``fit(..., lr_schedule=...)``).

A schedule maps an epoch number and the optimizer's base learning rate to the rate for that
epoch; ``fit`` sets ``optimizer.lr`` from it before every epoch and puts the base rate back when
it returns. The names and formulas are PyTorch's (``torch.optim.lr_scheduler``), but a schedule
here is a pure function of the epoch rather than an object stepped by hand: the epoch is the
network's own epoch counter, which runs on across ``fit`` calls, so ``fit(epochs=5)`` twice
follows the same rates as ``fit(epochs=10)`` — the same promise the epoch shuffle keeps.

Any callable ``fn(epoch) -> lr`` works as a schedule too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Callable, Union


def _check_positive(name: str, value: object, integer: bool = False) -> float:
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or not value > 0 or not math.isfinite(value):
        kind = "int" if integer else "number"
        raise ValueError(f"{name} must be a positive {kind}; got {value!r}")
    return value


class Schedule:
    """Base class: ``schedule(epoch, base_lr)`` returns the learning rate of ``epoch``."""

    def __call__(self, epoch: int, base_lr: float) -> float:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class StepLR(Schedule):
    """Multiply the rate by ``gamma`` every ``step_size`` epochs: ``base · γ^⌊epoch/step⌋``."""

    def __init__(self, step_size: int, gamma: float = 0.1) -> None:
        self.step_size = _check_positive("step_size", step_size, integer=True)
        self.gamma = _check_positive("gamma", gamma)

    def __call__(self, epoch: int, base_lr: float) -> float:
        return base_lr * self.gamma ** (epoch // self.step_size)


class MultiStepLR(Schedule):
    """Multiply the rate by ``gamma`` at each epoch listed in ``milestones``."""

    def __init__(self, milestones: Sequence[int], gamma: float = 0.1) -> None:
        self.milestones = sorted(int(m) for m in milestones)
        self.gamma = _check_positive("gamma", gamma)

    def __call__(self, epoch: int, base_lr: float) -> float:
        passed = sum(1 for m in self.milestones if epoch >= m)
        return base_lr * self.gamma ** passed


class ExponentialLR(Schedule):
    """Multiply the rate by ``gamma`` every epoch: ``base · γ^epoch``."""

    def __init__(self, gamma: float) -> None:
        self.gamma = _check_positive("gamma", gamma)

    def __call__(self, epoch: int, base_lr: float) -> float:
        return base_lr * self.gamma ** epoch


class CosineAnnealingLR(Schedule):
    """Half a cosine from the base rate down to ``eta_min`` over ``T_max`` epochs.

    ``eta_min + (base − eta_min)·(1 + cos(π·epoch/T_max))/2``; after ``T_max`` epochs the rate
    stays at ``eta_min`` (PyTorch's closed form, without its restart-by-reflection).
    """

    def __init__(self, T_max: int, eta_min: float = 0.0) -> None:  # noqa: N803 (PyTorch's name)
        self.T_max = _check_positive("T_max", T_max, integer=True)
        if isinstance(eta_min, bool) or not isinstance(eta_min, (int, float)) or eta_min < 0:
            raise ValueError(f"eta_min must be a non-negative number; got {eta_min!r}")
        self.eta_min = float(eta_min)

    def __call__(self, epoch: int, base_lr: float) -> float:
        t = min(epoch, self.T_max)
        cosine = (1 + math.cos(math.pi * t / self.T_max)) / 2
        return self.eta_min + (base_lr - self.eta_min) * cosine


class LambdaLR(Schedule):
    """The base rate times ``factor(epoch)``, as ``torch.optim.lr_scheduler.LambdaLR``."""

    def __init__(self, factor: Callable[[int], float]) -> None:
        if not callable(factor):
            raise TypeError(f"factor must be callable; got {type(factor).__name__}")
        self.factor = factor

    def __call__(self, epoch: int, base_lr: float) -> float:
        return base_lr * float(self.factor(epoch))


LRSchedule = Union[Schedule, Callable[[int], float]]


def scheduled_lr(schedule: LRSchedule, epoch: int, base_lr: float) -> float:
    """The learning rate ``schedule`` gives ``epoch``, checked to be a positive finite number."""
    lr = schedule(epoch, base_lr) if isinstance(schedule, Schedule) else schedule(epoch)
    try:
        lr = float(lr)
    except (TypeError, ValueError):
        raise TypeError(f"lr_schedule returned {type(lr).__name__} {lr!r} for epoch {epoch}; "
                        "expected a number") from None
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr_schedule returned {lr!r} for epoch {epoch}; the learning rate must "
                         "be positive and finite")
    return lr
