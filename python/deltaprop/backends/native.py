"""The native backend: a thin adapter over the C++ kernels in ``deltaprop._native``.

Same interface as :mod:`deltaprop.backends.reference` (see :mod:`deltaprop.backends`). Arrays
reach C++ without a copy when they are C-contiguous and of the network's dtype; every call runs
with the GIL released, and ``fit_epoch`` runs a whole epoch in one call.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .. import _native
from ..errors import diverged
from ..optim import Optimizer
from ..spec import NetSpec

_NETWORK_CLASSES = {np.dtype("float32"): _native.Network32, np.dtype("float64"): _native.Network64}


class Network:
    """A network whose parameters and optimizer state live in C++."""

    def __init__(self, spec: NetSpec, weights: list[np.ndarray], biases: list[np.ndarray] | None):
        self.spec = spec
        self._net = _NETWORK_CLASSES[spec.dtype](
            list(spec.sizes), list(spec.activations), spec.loss, spec.alpha, spec.bias
        )
        self.set_weights(weights, biases)

    def get_weights(self) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
        return self._net.get_weights()

    def set_weights(self, weights: list[np.ndarray], biases: list[np.ndarray] | None) -> None:
        self._net.set_weights(list(weights), None if biases is None else list(biases))

    def forward(self, X: np.ndarray) -> np.ndarray:
        return self._net.forward(X)

    def loss(self, X: np.ndarray, T: np.ndarray) -> float:
        return float(self._net.loss(X, T))

    def gradients(self, X: np.ndarray, T: np.ndarray) -> tuple[list[np.ndarray], list | None]:
        return self._net.gradients(X, T)

    def train_step(self, X: np.ndarray, T: np.ndarray, optimizer: Optimizer) -> float:
        return float(self._net.train_step(X, T, optimizer))

    def gradients_into(self, X: np.ndarray, T: np.ndarray, out: np.ndarray) -> float:
        return float(self._net.gradients_into(X, T, out))

    def apply_gradients(self, flat: np.ndarray, optimizer: Optimizer) -> bool:
        return bool(self._net.apply_gradients(flat, optimizer))

    @property
    def n_parameters(self) -> int:
        return int(self._net.n_parameters)

    def fit_epoch(
        self,
        X: np.ndarray,
        T: np.ndarray,
        optimizer: Optimizer,
        batch_size: int,
        shuffle: bool,
        seed: int,
        epoch: int,
        progress: Callable[[int, float], Any] | None = None,
        x_largest: float | None = None,
    ) -> float:
        """One epoch in C++; ``progress(samples_done, loss_sum)`` is called at most every 0.1 s.

        ``x_largest``: max |X|, measured by the caller's own finiteness check of this X
        (``validation.features_and_largest``). The bindings then trust X to be finite and skip
        their scan of it; without it they scan X every epoch.

        Raises
        ------
        TrainingDiverged
            When a batch's loss is not finite (that batch's update is not applied).
        """
        result = self._net.fit_epoch(
            X, T, optimizer, int(batch_size), bool(shuffle), seed % 2**64, epoch % 2**64, progress,
            x_largest
        )
        if result["diverged"]:
            raise diverged(epoch, result["batch"])
        return result["loss_mean"]

    def optimizer_state(self) -> dict:
        return self._net.optimizer_state()

    def set_optimizer_state(self, state: dict) -> None:
        self._net.set_optimizer_state(state)

    def reset_optimizer(self) -> None:
        self._net.reset_optimizer()


def forward_layer(A_prev: np.ndarray, W: np.ndarray, b: np.ndarray | None, activation: str,
                  alpha: float) -> np.ndarray:
    return _native.forward_layer(A_prev, W, b, activation, alpha)


def output_delta(A_L: np.ndarray, T: np.ndarray, loss: str, activation: str,
                 alpha: float) -> np.ndarray:
    return _native.output_delta(A_L, T, loss, activation, alpha)


def delta(D: np.ndarray, W: np.ndarray, A_prev: np.ndarray, activation: str,
          alpha: float) -> np.ndarray:
    return _native.delta(D, W, A_prev, activation, alpha)


def update(W: np.ndarray, b: np.ndarray | None, A_prev: np.ndarray, D: np.ndarray,
           lr: float) -> None:
    _native.update(W, b, A_prev, D, lr)
