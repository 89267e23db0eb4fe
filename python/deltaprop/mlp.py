"""The user-facing network: :class:`MLP`, backend-agnostic.

``MLP`` validates and converts every argument (:mod:`deltaprop.validation`) before it calls
its backend network, so a call that raises leaves the network exactly as it was, and both
backends see the same arrays. Weights are initialised here, in NumPy, so the native and the
reference backend start from identical numbers for a given seed.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from .backends import get_backend
from .errors import TrainingDiverged
from .history import History
from .metrics import score_outputs
from .optim import SGD, Adam, Optimizer
from .progress import ProgressBar
from .spec import NetSpec
from .validation import as_features, as_parameters, as_targets, check_positive_int

# He initialisation keeps the variance of ReLU-like layers' outputs steady with depth;
# Glorot (Xavier) does the same for the symmetric activations and the output layer.
_HE_ACTIVATIONS = ("relu", "leaky_relu")


def init_weights(spec: NetSpec, seed: int) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    """Uniform He (``relu``/``leaky_relu`` layers) or Glorot (others) weights, zero biases.

    Drawn in float64 from ``np.random.default_rng(seed)`` and then rounded to the dtype, so a
    float32 and a float64 network with the same seed start from the same values.
    """
    rng = np.random.default_rng(seed)
    weights = []
    for i, act in enumerate(spec.activations):
        fan_in, fan_out = spec.sizes[i], spec.sizes[i + 1]
        if act in _HE_ACTIVATIONS:
            limit = np.sqrt(6.0 / fan_in)
        else:
            limit = np.sqrt(6.0 / (fan_in + fan_out))
        weights.append(rng.uniform(-limit, limit, size=(fan_in, fan_out)).astype(spec.dtype))
    biases = [np.zeros(n, dtype=spec.dtype) for n in spec.sizes[1:]] if spec.bias else None
    return weights, biases


def _check_seed(seed: Any) -> int:
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be a non-negative int; got {type(seed).__name__} {seed!r}")
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must be in [0, 2**64); got {seed}")
    return int(seed)


class MLP:
    """A multilayer perceptron trained on the CPU by the native or the reference backend.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths ``[n_0, n_1, ..., n_L]``, input first.
    activation : str or list of str
        Hidden-layer activation(s): identity, sigmoid, tanh, relu or leaky_relu.
    loss : str
        ``"cross_entropy"`` (softmax output), ``"binary_cross_entropy"`` (sigmoid output) or
        ``"mse"``.
    output_activation : str or None
        None picks the loss's own: softmax, sigmoid or identity respectively.
    bias : bool
        Whether layers have bias vectors.
    dtype : {"float32", "float64"}
        The floating-point type of parameters and computation.
    backend : {"native", "reference"}
        Where the math runs: C++ kernels or the NumPy reference.
    seed : int
        Seeds the weight initialisation and the epoch shuffle of :meth:`fit`.
    alpha : float
        The slope of leaky_relu for negative inputs.
    """

    def __init__(self, sizes: Any, activation: str | list[str] = "relu",
                 loss: str = "cross_entropy", output_activation: str | None = None,
                 bias: bool = True, dtype: str | np.dtype = "float32", backend: str = "native",
                 seed: int = 0, alpha: float = 0.01) -> None:
        spec = NetSpec.build(sizes, activation=activation, loss=loss,
                             output_activation=output_activation, alpha=alpha, bias=bias,
                             dtype=dtype)
        seed = _check_seed(seed)
        module = get_backend(backend)
        W, b = init_weights(spec, seed)
        self._setup(spec, backend, seed, module.Network(spec, W, b))

    def _setup(self, spec: NetSpec, backend: str, seed: int, net: Any) -> None:
        self._spec = spec
        self._backend = backend
        self._seed = seed
        self._net = net
        self._optimizer: Optimizer | None = None  # the one whose state the backend holds
        self._epochs_seen = 0  # fit continues the shuffle sequence where it stopped

    # -- description -------------------------------------------------------------------------

    @property
    def spec(self) -> NetSpec:
        """The architecture: sizes, activations, loss, alpha, bias, dtype."""
        return self._spec

    @property
    def sizes(self) -> tuple[int, ...]:
        return self._spec.sizes

    @property
    def n_layers(self) -> int:
        return self._spec.n_layers

    @property
    def dtype(self) -> np.dtype:
        return self._spec.dtype

    @property
    def backend(self) -> str:
        return self._backend

    @property
    def seed(self) -> int:
        return self._seed

    def __repr__(self) -> str:
        s = self._spec
        hidden = s.activations[:-1]
        act = hidden[0] if hidden and len(set(hidden)) == 1 else list(hidden)
        return (f"MLP({list(s.sizes)}, activation={act!r}, loss={s.loss!r}, "
                f"output_activation={s.output_activation!r}, bias={s.bias}, "
                f"dtype={s.dtype.name!r}, backend={self._backend!r}, seed={self._seed})")

    # -- parameters --------------------------------------------------------------------------

    def get_weights(self) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
        """Copies of ``([W_1, ..., W_L], [b_1, ..., b_L])``; biases is None without biases."""
        return self._net.get_weights()

    def set_weights(self, weights: list[Any], biases: list[Any] | None = None) -> None:
        """Validate and copy in new parameters (same shapes as :meth:`get_weights` returns).

        Raises ``ValueError``/``TypeError`` for a wrong count, shape, dtype or non-finite value,
        leaving the network unchanged. The optimizer state is kept.
        """
        W, b = as_parameters(weights, biases, self._spec)
        self._net.set_weights(W, b)

    # -- evaluation --------------------------------------------------------------------------

    def _data(self, X: Any, y: Any, prefix: str = "") -> tuple[np.ndarray, np.ndarray]:
        Xc = as_features(X, self._spec.sizes[0], self._spec.dtype, prefix + "X")
        return Xc, as_targets(y, self._spec, Xc.shape[0], prefix + "y")

    def forward(self, X: Any) -> np.ndarray:
        """Output activations ``A_L``, shape ``(B, n_L)``."""
        return self._net.forward(as_features(X, self._spec.sizes[0], self._spec.dtype))

    def loss(self, X: Any, y: Any) -> float:
        """Mean loss over the samples of ``X`` (targets as described in DESIGN §3)."""
        return float(self._net.loss(*self._data(X, y)))

    def gradients(self, X: Any, y: Any) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
        """Gradients of the mean loss: ``([dE/dW_l], [dE/db_l] or None)``."""
        return self._net.gradients(*self._data(X, y))

    def predict(self, X: Any) -> np.ndarray:
        """Class labels (cross_entropy), 0/1 labels (binary_cross_entropy) or outputs (mse).

        binary_cross_entropy gives shape ``(B,)`` for one output and ``(B, n_L)`` otherwise.
        """
        A = self.forward(X)
        if self._spec.loss == "cross_entropy":
            return A.argmax(axis=1)
        if self._spec.loss == "binary_cross_entropy":
            labels = (A >= 0.5).astype(np.int64)
            return labels[:, 0] if labels.shape[1] == 1 else labels
        return A

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities; ``(B, 2)`` columns ``[1 − p, p]`` for one sigmoid output."""
        if self._spec.loss == "mse":
            raise ValueError("predict_proba needs loss 'cross_entropy' or 'binary_cross_entropy';"
                             " this network is a regressor (loss 'mse'): use predict")
        A = self.forward(X)
        if self._spec.loss == "binary_cross_entropy" and A.shape[1] == 1:
            return np.hstack([1 - A, A])
        return A

    def score(self, X: Any, y: Any) -> float:
        """Accuracy for classification (labels or target rows), R² for mse."""
        Xc, T = self._data(X, y)
        return score_outputs(self._spec, self._net.forward(Xc), T)

    # -- training ----------------------------------------------------------------------------

    @staticmethod
    def _check_optimizer(optimizer: Any) -> Optimizer:
        if not isinstance(optimizer, (SGD, Adam)):
            raise TypeError("optimizer must be a deltaprop.SGD or deltaprop.Adam; got "
                            f"{type(optimizer).__name__}")
        return optimizer

    def _use(self, optimizer: Optimizer) -> None:
        # Moments belong to one optimizer object; a different object starts from zero state.
        if optimizer is not self._optimizer:
            self._net.reset_optimizer()
            self._optimizer = optimizer

    def train_step(self, X: Any, y: Any, optimizer: Optimizer) -> float:
        """One optimizer step on the batch ``(X, y)``; returns its loss before the update.

        Passing the same optimizer object again continues its state (momentum, Adam moments);
        a different object starts from a fresh state.
        """
        self._check_optimizer(optimizer)
        Xc, T = self._data(X, y)
        self._use(optimizer)
        return float(self._net.train_step(Xc, T, optimizer))

    def fit(self, X: Any, y: Any, epochs: int = 10, batch_size: int = 128,
            optimizer: Optimizer | None = None, shuffle: bool = True,
            validation_data: tuple[Any, Any] | None = None, progress: bool = False,
            callback: Callable[[int, History], bool | None] | None = None,
            comm: Any = None) -> History:
        """Train for ``epochs`` passes over ``(X, y)`` in mini-batches.

        Parameters
        ----------
        epochs, batch_size : int
            Positive; ``batch_size`` is clipped to the number of samples.
        optimizer : SGD or Adam, optional
            Defaults to ``SGD(lr=0.01)``. Reusing one object across calls keeps its state.
        shuffle : bool
            Visit samples in the seeded order of :func:`deltaprop.shuffle.epoch_order`; epochs
            are numbered across ``fit`` calls, so two calls of 5 epochs equal one of 10.
        validation_data : (X_val, y_val), optional
            Scored after every epoch into ``val_loss`` and ``val_score``.
        progress : bool
            Show a tqdm progress bar (``pip install tqdm``).
        callback : callable, optional
            ``callback(epoch, history)`` after every epoch; returning True stops training.
        comm : mpi4py communicator, optional
            Train data-parallel over its ranks (every rank calls ``fit`` with the same data;
            ``batch_size`` is the global batch): see :mod:`deltaprop.distributed`.

        Returns
        -------
        History

        Raises
        ------
        deltaprop.errors.TrainingDiverged
            When a batch's loss is not finite. That batch's update is not applied; the
            exception's ``history`` holds the epochs that finished.
        """
        if comm is not None:
            from .distributed import fit_distributed

            return fit_distributed(self, X, y, comm, epochs, batch_size, optimizer, shuffle,
                                   validation_data, progress, callback)
        # Everything is checked before the first step, so a bad argument changes nothing.
        Xc, T = self._data(X, y)
        epochs = check_positive_int(epochs, "epochs")
        batch_size = min(check_positive_int(batch_size, "batch_size"), Xc.shape[0])
        optimizer = SGD(lr=0.01) if optimizer is None else self._check_optimizer(optimizer)
        if not isinstance(shuffle, (bool, np.bool_)):
            raise TypeError(f"shuffle must be a bool; got {type(shuffle).__name__}")
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise TypeError("validation_data must be a pair (X_val, y_val)")
            val = self._data(*validation_data, prefix="validation_data ")
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable; got {type(callback).__name__}")
        bar = ProgressBar(epochs, Xc.shape[0]) if progress else None

        self._use(optimizer)
        history = History()
        try:
            for epoch in range(epochs):
                extra = {} if bar is None else {"progress": bar.batch_done}
                start = time.perf_counter()
                try:
                    loss = self._net.fit_epoch(Xc, T, optimizer, batch_size, bool(shuffle),
                                               self._seed, self._epochs_seen, **extra)
                except TrainingDiverged as exc:
                    exc.history = history  # the epochs that did finish
                    raise
                finally:
                    # Batches before a divergence were applied: the epoch is spent either way.
                    self._epochs_seen += 1
                seconds = time.perf_counter() - start
                val_loss = val_score = None
                if val is not None:
                    val_loss = self._net.loss(*val)
                    val_score = score_outputs(self._spec, self._net.forward(val[0]), val[1])
                history.record(loss, seconds, Xc.shape[0], val_loss, val_score)
                if bar is not None:
                    bar.epoch_done(history)
                if callback is not None and callback(epoch, history):
                    break
        finally:
            if bar is not None:
                bar.close()
        return history

    # -- moving between backends -------------------------------------------------------------

    def to(self, backend: str) -> MLP:
        """A new MLP on ``backend`` with this one's weights, optimizer state and seed."""
        module = get_backend(backend)
        W, b = self._net.get_weights()
        other = MLP.__new__(MLP)
        other._setup(self._spec, backend, self._seed, module.Network(self._spec, W, b))
        other._net.set_optimizer_state(self._net.optimizer_state())
        other._optimizer = self._optimizer
        other._epochs_seen = self._epochs_seen
        return other
