"""The reference backend: DESIGN §1 in plain NumPy, one expression per formula.

This module is the executable specification every other backend is checked against, so it is
written for a reader, not for speed. Like scikit-learn's ``neural_network/_base.py`` it keeps
the activations, their derivatives and the losses in small dictionaries; the derivatives take
the layer's *output* ``A`` (not ``Z``), which is what lets the native backend forget ``Z``.

Everything is computed in the network's dtype (float32 stays float32); only the loss value is
accumulated in float64 and returned as a Python float.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from ..errors import diverged
from ..optim import Optimizer
from ..shuffle import epoch_order
from ..spec import NetSpec


def _sigmoid(Z: np.ndarray, alpha: float) -> np.ndarray:
    # exp(-|z|) <= 1 never overflows: σ(z) = 1/(1+e) for z >= 0 and e/(1+e) for z < 0.
    e = np.exp(-np.abs(Z))
    return np.where(Z >= 0, 1, e) / (1 + e)


def _softmax(Z: np.ndarray, alpha: float) -> np.ndarray:
    # Subtracting the row maximum keeps every exp() argument <= 0: no overflow.
    e = np.exp(Z - Z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _log_softmax(Z: np.ndarray) -> np.ndarray:
    shifted = Z - Z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


Activation = Callable[[np.ndarray, float], np.ndarray]

ACTIVATIONS: dict[str, Activation] = {
    "identity": lambda Z, alpha: Z,
    "sigmoid": _sigmoid,
    "tanh": lambda Z, alpha: np.tanh(Z),
    "relu": lambda Z, alpha: np.maximum(Z, 0),
    "leaky_relu": lambda Z, alpha: np.where(Z > 0, Z, alpha * Z),
    "softmax": _softmax,
}

# g'(Z) written in terms of the output A = g(Z). Softmax has none here: it only appears at the
# output, where the loss fuses its Jacobian into (A - T) / B.
DERIVATIVES: dict[str, Activation] = {
    "identity": lambda A, alpha: np.ones_like(A),
    "sigmoid": lambda A, alpha: A * (1 - A),
    "tanh": lambda A, alpha: 1 - A * A,
    "relu": lambda A, alpha: (A > 0).astype(A.dtype),
    "leaky_relu": lambda A, alpha: np.where(A > 0, 1, alpha).astype(A.dtype),
}

# Per-sample losses from the output layer's pre-activation Z (not from A = g(Z)): the log-space
# forms stay finite where log(softmax) or log(σ) of a rounded A would give log(0).
LOSSES: dict[str, Callable[[np.ndarray, np.ndarray, str, float], np.ndarray]] = {
    # ½ Σ_k (a_k − t_k)²
    "mse": lambda Z, T, act, alpha: 0.5 * ((ACTIVATIONS[act](Z, alpha) - T) ** 2).sum(axis=1),
    # −Σ_k t_k log softmax(z)_k, with log softmax(z) = z − max − log Σ exp(z − max)
    "cross_entropy": lambda Z, T, act, alpha: -(T * _log_softmax(Z)).sum(axis=1),
    # −[t log σ(z) + (1−t) log(1−σ(z))] = max(z, 0) − t·z + log(1 + exp(−|z|))
    "binary_cross_entropy": lambda Z, T, act, alpha: (
        np.maximum(Z, 0) - T * Z + np.log1p(np.exp(-np.abs(Z)))
    ).sum(axis=1),
}



# ----------------------------------------------------------------------------------------------
# The three loops, one layer at a time (deltaprop.ops). Arguments are already validated.


def forward_layer(A_prev: np.ndarray, W: np.ndarray, b: np.ndarray | None, activation: str,
                  alpha: float = 0.01) -> np.ndarray:
    """Return ``A = g(A_prev W + b)`` for one layer (``b`` may be None)."""
    with _overflow_is_reported():
        Z = A_prev @ W if b is None else A_prev @ W + b
        return ACTIVATIONS[activation](Z, alpha)


def output_delta(A_L: np.ndarray, T: np.ndarray, loss: str, activation: str,
                 alpha: float = 0.01) -> np.ndarray:
    """Return ``D_L = ∂E/∂Z_L`` for the mean loss over the ``B`` rows of ``A_L``.

    For mse this is ``(A_L − T) ⊙ g'(A_L) / B``. For cross_entropy (softmax output) and
    binary_cross_entropy (sigmoid output) the activation's Jacobian cancels against the loss's
    and leaves ``(A_L − T) / B``.
    """
    B = A_L.shape[0]
    with _overflow_is_reported():
        if loss == "mse":
            return (A_L - T) * DERIVATIVES[activation](A_L, alpha) / B
        return (A_L - T) / B


def delta(D: np.ndarray, W: np.ndarray, A_prev: np.ndarray, activation: str,
          alpha: float = 0.01) -> np.ndarray:
    """Return ``D_{l-1} = (D_l W_lᵀ) ⊙ g_{l-1}'(A_{l-1})``; ``activation`` is layer l-1's."""
    with _overflow_is_reported():
        return (D @ W.T) * DERIVATIVES[activation](A_prev, alpha)


def update(W: np.ndarray, b: np.ndarray | None, A_prev: np.ndarray, D: np.ndarray,
           lr: float) -> None:
    """Plain SGD step in place: ``W −= lr A_prevᵀ D``, ``b −= lr Σ_rows D``."""
    with _overflow_is_reported():
        W -= lr * (A_prev.T @ D)
        if b is not None:
            b -= lr * D.sum(axis=0)


# ----------------------------------------------------------------------------------------------
# A whole network (the interface documented in deltaprop.backends).


class Network:
    """A multilayer perceptron held as NumPy arrays, with its optimizer state.

    Parameters
    ----------
    spec : NetSpec
        Sizes, activations, loss, leaky-ReLU slope, bias flag and dtype.
    weights : list of ndarray
        ``W_l`` of shape ``(n_{l-1}, n_l)``, copied in.
    biases : list of ndarray or None
        ``b_l`` of shape ``(n_l,)``, copied in; None when ``spec.bias`` is False.
    """

    def __init__(self, spec: NetSpec, weights: list[np.ndarray],
                 biases: list[np.ndarray] | None) -> None:
        self.spec = spec
        self.set_weights(weights, biases)
        self.reset_optimizer()

    # -- parameters --------------------------------------------------------------------------

    def get_weights(self) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
        """Return copies of the weights and biases (biases is None without biases)."""
        biases = None if self.biases is None else [b.copy() for b in self.biases]
        return [W.copy() for W in self.weights], biases

    def set_weights(self, weights: list[np.ndarray], biases: list[np.ndarray] | None) -> None:
        """Copy ``weights`` and ``biases`` in, as C-contiguous arrays of the network dtype."""
        dtype = self.spec.dtype
        self.weights = [np.array(W, dtype=dtype, order="C") for W in weights]
        self.biases = None if biases is None else [np.array(b, dtype=dtype) for b in biases]

    # -- the math ----------------------------------------------------------------------------

    def _forward(self, X: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """Return the activations ``[A_0 = X, A_1, ..., A_L]`` and the output's ``Z_L``."""
        spec = self.spec
        A = [X]
        for i, W in enumerate(self.weights):  # weights[i] is W_{i+1}
            Z = A[-1] @ W if self.biases is None else A[-1] @ W + self.biases[i]
            A.append(ACTIVATIONS[spec.activations[i]](Z, spec.alpha))
        return A, Z

    def _loss(self, Z_L: np.ndarray, T: np.ndarray) -> float:
        per_sample = LOSSES[self.spec.loss](Z_L, T, self.spec.output_activation, self.spec.alpha)
        return float(per_sample.sum(dtype=np.float64) / per_sample.shape[0])

    def _backward(self, A: list[np.ndarray], T: np.ndarray
                  ) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
        spec = self.spec
        L = spec.n_layers
        D = output_delta(A[L], T, spec.loss, spec.output_activation, spec.alpha)
        dW: list[np.ndarray] = []
        db: list[np.ndarray] = []
        for i in reversed(range(L)):  # weights[i] is W_{i+1}, its input A[i]
            dW.insert(0, A[i].T @ D)
            db.insert(0, D.sum(axis=0))
            if i > 0:
                D = delta(D, self.weights[i], A[i], spec.activations[i - 1], spec.alpha)
        return dW, (None if self.biases is None else db)

    def forward(self, X: np.ndarray) -> np.ndarray:
        """Return the output activations ``A_L``, shape ``(B, n_L)``."""
        with _overflow_is_reported():
            return self._forward(X)[0][-1]

    def loss(self, X: np.ndarray, T: np.ndarray) -> float:
        """Return the mean loss over the rows of ``X``."""
        with _overflow_is_reported():
            return self._loss(self._forward(X)[1], T)

    def gradients(self, X: np.ndarray, T: np.ndarray
                  ) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
        """Return ``([∂E/∂W_l], [∂E/∂b_l] or None)`` of the mean loss."""
        with _overflow_is_reported():
            return self._backward(self._forward(X)[0], T)

    # -- training ----------------------------------------------------------------------------

    def train_step(self, X: np.ndarray, T: np.ndarray, optimizer: Optimizer) -> float:
        """Take one optimizer step on the batch; return its loss before the update.

        Every gradient is computed before any parameter changes, so ``D_{l-1}`` uses the old
        ``W_l`` (DESIGN §1). A non-finite loss is returned without an update; a step that would
        leave a parameter or moment non-finite is undone and returns NaN.
        """
        with _overflow_is_reported():
            A, Z_L = self._forward(X)
            loss = self._loss(Z_L, T)
            if not np.isfinite(loss):  # keep the last good weights; fit_epoch reports divergence
                return loss
            before = self._snapshot()
            self._apply(*self._backward(A, T), optimizer)
        # A finite loss can still overflow a gradient or a moment: undo such a step.
        if not all(np.isfinite(a).all() for a in self._snapshot()[1]):
            self._restore(before)
            return math.nan
        return loss

    def _snapshot(self) -> tuple[dict, list[np.ndarray]]:
        """Copies of the parameters and optimizer state (and, second, a flat list of them)."""
        params = _interleave(self.weights, self.biases)
        state = {"params": [p.copy() for p in params], "kind": self._state_kind,
                 "state": self.optimizer_state()}
        return state, state["params"] + [a for k in _MOMENTS for a in state["state"][k]]

    def _restore(self, snapshot: tuple[dict, list[np.ndarray]]) -> None:
        saved = snapshot[0]
        for p, old in zip(_interleave(self.weights, self.biases), saved["params"]):
            p[...] = old
        self.set_optimizer_state(saved["state"])
        self._state_kind = saved["kind"]

    def gradients_into(self, X: np.ndarray, T: np.ndarray, out: np.ndarray) -> float:
        """Write the mean-loss gradients into the flat ``out``; return the mean loss.

        ``out`` has :attr:`n_parameters` elements laid out ``W_1, b_1, W_2, b_2, ...`` (each
        ``W_l`` row-major; no ``b_l`` without biases), the layout data-parallel training sums
        across processes in one buffer.
        """
        A, Z_L = self._forward(X)
        dW, db = self._backward(A, T)
        for view, g in zip(self._flat_views(out), _interleave(dW, db)):
            view[...] = g
        return self._loss(Z_L, T)

    def apply_gradients(self, flat: np.ndarray, optimizer: Optimizer) -> bool:
        """Take one optimizer step from gradients laid out as :meth:`gradients_into` writes.

        Returns False, with the step undone, when it would leave a parameter or moment
        non-finite (as :meth:`train_step` guards its steps).
        """
        views = self._flat_views(flat)
        before = self._snapshot()
        with _overflow_is_reported():
            if self.biases is None:
                self._apply(views, None, optimizer)
            else:
                self._apply(views[0::2], views[1::2], optimizer)
        if not all(np.isfinite(a).all() for a in self._snapshot()[1]):
            self._restore(before)
            return False
        return True

    @property
    def n_parameters(self) -> int:
        """The number of weights and biases: the length of a flat gradient."""
        return sum(p.size for p in _interleave(self.weights, self.biases))

    def _flat_views(self, flat: np.ndarray) -> list[np.ndarray]:
        """Views of ``flat`` shaped like ``W_1, b_1, W_2, b_2, ...``."""
        views, offset = [], 0
        for p in _interleave(self.weights, self.biases):
            views.append(flat[offset:offset + p.size].reshape(p.shape))
            offset += p.size
        return views

    def _apply(self, dW: list[np.ndarray], db: list[np.ndarray] | None,
               optimizer: Optimizer) -> None:
        """One optimizer step from the gradients ``dW`` and ``db``."""
        self._prepare_state(optimizer)
        self.state["step"] += 1
        wd = optimizer.weight_decay
        groups = [("weights", self.weights, [g + wd * W for g, W in zip(dW, self.weights)])]
        if self.biases is not None:
            groups.append(("biases", self.biases, db))  # no weight decay on biases
        for name, params, grads in groups:
            m, v = self.state["m_" + name], self.state["v_" + name]
            for i, (p, g) in enumerate(zip(params, grads)):
                p -= self._step(optimizer, g, m, v, i)

    def _step(self, opt: Optimizer, g: np.ndarray, m: list[np.ndarray], v: list[np.ndarray],
              i: int) -> np.ndarray:
        """Return what to subtract from parameter ``i`` given its gradient ``g``; updates the
        moments ``m[i]`` (SGD's velocity or Adam's first moment) and ``v[i]`` in place."""
        if opt.kind == "adam":
            b1, b2, t = opt.beta1, opt.beta2, self.state["step"]
            m[i] = _normal_or_zero(b1 * m[i] + (1 - b1) * g)
            v[i] = _normal_or_zero(b2 * v[i] + (1 - b2) * g * g)
            m_hat, v_hat = m[i] / (1 - b1**t), v[i] / (1 - b2**t)
            return opt.lr * m_hat / (np.sqrt(v_hat) + opt.eps)
        if opt.momentum == 0:
            return opt.lr * g
        m[i] = _normal_or_zero(opt.momentum * m[i] + g)
        return opt.lr * (g + opt.momentum * m[i] if opt.nesterov else m[i])

    def _prepare_state(self, opt: Optimizer) -> None:
        """Reset the state if the optimizer kind changed; allocate zero moments on first use."""
        kind = opt.kind
        if self._state_kind not in (None, kind):
            self.reset_optimizer()
        self._state_kind = kind
        uses_m = kind == "adam" or opt.momentum > 0
        for moment, used in (("m", uses_m), ("v", kind == "adam")):
            if used and not self.state[moment + "_weights"]:
                self.state[moment + "_weights"] = [np.zeros_like(W) for W in self.weights]
                self.state[moment + "_biases"] = [np.zeros_like(b) for b in self.biases or []]

    def fit_epoch(self, X: np.ndarray, T: np.ndarray, optimizer: Optimizer, batch_size: int,
                  shuffle: bool, seed: int, epoch: int,
                  progress: Callable[[int, float], object] | None = None,
                  x_largest: float | None = None) -> float:
        """One pass over the rows in consecutive batches; return the mean per-sample loss.

        ``progress(samples_done, loss_sum)`` is called after every batch. A batch whose loss is
        not finite stops the epoch with :class:`~deltaprop.errors.TrainingDiverged`.
        ``x_largest`` (max |X|, which spares the native backend a scan of X) is not needed here.
        """
        n = X.shape[0]
        order = epoch_order(n, seed, epoch) if shuffle else np.arange(n)
        mean = 0.0  # Σ loss · rows / n: the mean of finite losses never overflows, a sum can
        for index, start in enumerate(range(0, n, batch_size)):
            rows = order[start:start + batch_size]
            loss = self.train_step(X[rows], T[rows], optimizer)
            if not np.isfinite(loss):
                raise diverged(epoch, index)
            mean += loss * (len(rows) / n)
            if progress is not None:
                progress(start + len(rows), mean * n)
        return mean

    # -- optimizer state ---------------------------------------------------------------------

    def optimizer_state(self) -> dict:
        """Return a copy of ``{"step", "m_weights", "m_biases", "v_weights", "v_biases"}``."""
        s = self.state
        return {"step": s["step"], **{k: [a.copy() for a in s[k]] for k in _MOMENTS}}

    def set_optimizer_state(self, state: dict) -> None:
        """Copy an optimizer state in (the format :meth:`optimizer_state` returns)."""
        dtype = self.spec.dtype
        new = {"step": int(state["step"])}
        for k in _MOMENTS:
            params = self.weights if k.endswith("weights") else (self.biases or [])
            arrays = [np.array(a, dtype=dtype, order="C") for a in state[k]]
            if arrays and [a.shape for a in arrays] != [p.shape for p in params]:
                raise ValueError(f"optimizer state {k!r} has shapes {[a.shape for a in arrays]}; "
                                 f"expected {[p.shape for p in params]}")
            new[k] = arrays
        self.state = new
        # Adam keeps second moments, SGD with momentum only a velocity; an empty state fits both.
        self._state_kind = "adam" if new["v_weights"] else ("sgd" if new["m_weights"] else None)

    def reset_optimizer(self) -> None:
        """Forget the optimizer state: step 0, no moments (re-allocated as zeros when used)."""
        self.state: dict = {"step": 0, **{k: [] for k in _MOMENTS}}
        self._state_kind: str | None = None


_MOMENTS = ("m_weights", "m_biases", "v_weights", "v_biases")


def _overflow_is_reported() -> np.errstate:
    """Overflow to inf and the NaN after it are results here, not warnings: a non-finite loss
    is returned (and fit raises TrainingDiverged), and dp.ops returns inf, as the native
    backend does."""
    return np.errstate(over="ignore", invalid="ignore", divide="ignore")


def _normal_or_zero(x: np.ndarray) -> np.ndarray:
    """``x`` with its subnormal entries set to 0: optimizer moments are stored so. A moment
    whose gradient has stopped decays toward 0 by β each step, and as a subnormal it slows
    every instruction that reads it on Intel cores (docs/performance.md)."""
    return np.where(np.abs(x) < np.finfo(x.dtype).tiny, x.dtype.type(0), x)


def _interleave(weights: list[np.ndarray], biases: list[np.ndarray] | None
                ) -> list[np.ndarray]:
    """``[W_1, b_1, W_2, b_2, ...]`` (``[W_1, W_2, ...]`` without biases)."""
    if biases is None:
        return list(weights)
    return [p for pair in zip(weights, biases) for p in pair]
