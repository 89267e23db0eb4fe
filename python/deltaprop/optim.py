"""Optimizers: hyper-parameters only. The state (velocities, moments, step count) lives in the
backend network next to the weights it belongs to, so the native backend updates both in place.

Weight decay is an L2 term added to the weight gradient (``g + weight_decay · W``, as
``torch.optim.SGD``/``Adam`` do); it is not applied to biases, as in scikit-learn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Union


def _check_hyper(name: str, value: object, low: float, high: float = math.inf,
                 low_inclusive: bool = True, high_inclusive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)  # NumPy scalars
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be a number; got {type(value).__name__}") from None
    value = float(value)
    ok_low = value >= low if low_inclusive else value > low
    ok_high = value <= high if high_inclusive else value < high
    if not (math.isfinite(value) and ok_low and ok_high):
        lo = "[" if low_inclusive else "("
        hi = "]" if high_inclusive else ")"
        raise ValueError(f"{name} must be in {lo}{low}, {high}{hi}; got {value}")
    return value


@dataclass
class SGD:
    """Stochastic gradient descent, with optional (Nesterov) momentum and weight decay.

    ``v ← momentum·v + g``; ``W ← W − lr·v`` (or ``W − lr·(g + momentum·v)`` with Nesterov).
    """

    lr: float = 0.01
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0

    kind = "sgd"

    def __post_init__(self) -> None:
        self.lr = _check_hyper("lr", self.lr, 0.0, low_inclusive=False)
        self.momentum = _check_hyper("momentum", self.momentum, 0.0, 1.0)
        self.weight_decay = _check_hyper("weight_decay", self.weight_decay, 0.0)
        self.nesterov = bool(self.nesterov)
        if self.nesterov and self.momentum == 0.0:
            raise ValueError("nesterov=True needs momentum > 0")


@dataclass
class Adam:
    """Adam (Kingma & Ba) with bias correction and optional L2 weight decay."""

    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0

    kind = "adam"

    def __post_init__(self) -> None:
        self.lr = _check_hyper("lr", self.lr, 0.0, low_inclusive=False)
        self.beta1 = _check_hyper("beta1", self.beta1, 0.0, 1.0)
        self.beta2 = _check_hyper("beta2", self.beta2, 0.0, 1.0)
        self.eps = _check_hyper("eps", self.eps, 0.0, low_inclusive=False)
        self.weight_decay = _check_hyper("weight_decay", self.weight_decay, 0.0)


Optimizer = Union[SGD, Adam]
