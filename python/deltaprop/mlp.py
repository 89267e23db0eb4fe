"""The user-facing network: :class:`MLP`, backend-agnostic.

``MLP`` validates and converts every argument (:mod:`deltaprop.validation`) before it calls
its backend network, so a call that raises leaves the network exactly as it was, and both
backends see the same arrays. Weights are initialised here, in NumPy, so the native and the
reference backend start from identical numbers for a given seed.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import training
from .backends import get_backend
from .errors import diverged_step
from .history import History
from .metrics import score_outputs
from .optim import SGD, Adam, Optimizer
from .schedules import LRSchedule
from .spec import NetSpec
from .validation import as_features, as_parameters, as_targets, features_and_largest

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
        return self._data_and_largest(X, y, prefix)[:2]

    def _data_and_largest(self, X: Any, y: Any,
                          prefix: str = "") -> tuple[np.ndarray, np.ndarray, float]:
        """Validated ``(X, T)`` and max |X|, which the check of X measured."""
        Xc, largest = features_and_largest(X, self._spec.sizes[0], self._spec.dtype, prefix + "X")
        return Xc, as_targets(y, self._spec, Xc.shape[0], prefix + "y"), largest

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

    def _check_optimizer(self, optimizer: Any) -> Optimizer:
        """``optimizer``, checked as the backend will check it, before anything changes.

        A new optimizer object resets the network's optimizer state (:meth:`_use`), so an
        optimizer the backend would refuse must be refused first: its fields again (they may
        have been assigned since construction), then in the network's dtype, where a valid
        eps can round to 0 and a valid lr or weight_decay overflow to inf.
        """
        if not isinstance(optimizer, (SGD, Adam)):
            raise TypeError("optimizer must be a deltaprop.SGD or deltaprop.Adam; got "
                            f"{type(optimizer).__name__}")
        optimizer.__post_init__()
        as_dtype = self._spec.dtype.type
        with np.errstate(over="ignore", under="ignore"):
            if not (np.isfinite(as_dtype(optimizer.lr))
                    and np.isfinite(as_dtype(optimizer.weight_decay))):
                raise ValueError(f"optimizer.lr and weight_decay must be finite in "
                                 f"{self._spec.dtype.name}; got {optimizer}")
            if not as_dtype(optimizer.lr) > 0:  # training would silently change nothing
                raise ValueError(f"optimizer.lr is 0 in {self._spec.dtype.name}; use a larger "
                                 f"lr (got {optimizer.lr})")
            if optimizer.kind == "adam" and not as_dtype(optimizer.eps) > 0:
                raise ValueError(f"optimizer.eps is 0 in {self._spec.dtype.name}; use a larger "
                                 f"eps (got {optimizer.eps})")
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

        Raises
        ------
        deltaprop.errors.TrainingDiverged
            When the batch's loss, or the update it would make, is not finite (its ``step`` is
            the optimizer step this call would have taken). The network keeps its weights and
            optimizer state, as if the call had not been made.
        """
        self._check_optimizer(optimizer)
        Xc, T = self._data(X, y)
        # A new optimizer object resets the state; a diverging step must not lose the old one.
        # Copied only on a switch, which a training loop does once.
        previous = None
        if optimizer is not self._optimizer:
            previous = (self._optimizer, self._net.optimizer_state())
        self._use(optimizer)
        loss = float(self._net.train_step(Xc, T, optimizer))
        if math.isfinite(loss):
            return loss
        # The backend applied nothing (or undid the step); name the step it would have been.
        step = int(self._net.optimizer_state()["step"]) + 1
        if previous is not None:
            self._optimizer = previous[0]
            self._net.set_optimizer_state(previous[1])
        raise diverged_step(step)

    def fit(self, X: Any, y: Any, epochs: int = 10, batch_size: int = 128,
            optimizer: Optimizer | None = None, shuffle: bool = True,
            validation_data: tuple[Any, Any] | None = None, progress: bool = False,
            callback: Any = None, lr_schedule: LRSchedule | None = None,
            comm: Any = None) -> History:
        """Train for ``epochs`` passes over ``(X, y)`` in mini-batches.

        Parameters
        ----------
        X, y : array_like
            As for :meth:`loss`. A memory map (``np.load(path, mmap_mode="r")``) or another
            on-disk array (h5py, zarr) trains without being loaded whole: C-contiguous data of
            the network's dtype is read straight from the mapping, anything else is gathered
            and converted a chunk of batches at a time (:mod:`deltaprop.streaming`).
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
            Show a tqdm progress bar per epoch with samples/s, loss and validation loss
            (``pip install tqdm``; ``tqdm.auto``, so it renders as a widget in Jupyter).
        callback : callable or list of callables, optional
            Called after every epoch as ``callback(epoch, history, net)`` (or
            ``callback(epoch, history)``); returning True or raising
            :class:`deltaprop.callbacks.StopTraining` stops training. See
            :mod:`deltaprop.callbacks` (e.g. :class:`~deltaprop.callbacks.EarlyStopping`).
        lr_schedule : Schedule or callable, optional
            Sets ``optimizer.lr`` before every epoch from the network's epoch counter, e.g.
            :class:`deltaprop.schedules.StepLR`; a plain ``fn(epoch) -> lr`` works too.
            ``optimizer.lr`` is back at its base value when ``fit`` returns.
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

            optimizer = SGD(lr=0.01) if optimizer is None else optimizer
            on_epoch, finish = training.distributed_callback(self, callback, lr_schedule,
                                                             optimizer)
            history = None
            try:
                history = fit_distributed(self, X, y, comm, epochs, batch_size, optimizer,
                                          shuffle, validation_data, progress, on_epoch)
            finally:
                finish(history)
            return history
        return training.fit(self, X, y, epochs, batch_size, optimizer, shuffle,
                            validation_data, progress, callback, lr_schedule)

    # -- pickling (multiprocessing, joblib, copy.deepcopy) -----------------------------------

    def __getstate__(self) -> dict:
        W, b = self._net.get_weights()
        return {"spec": self._spec, "backend": self._backend, "seed": self._seed,
                "weights": W, "biases": b, "optimizer_state": self._net.optimizer_state(),
                "optimizer": self._optimizer, "epochs_seen": self._epochs_seen}

    def __setstate__(self, state: dict) -> None:
        module = get_backend(state["backend"])
        net = module.Network(state["spec"], state["weights"], state["biases"])
        net.set_optimizer_state(state["optimizer_state"])
        self._setup(state["spec"], state["backend"], state["seed"], net)
        self._optimizer = state["optimizer"]
        self._epochs_seen = state["epochs_seen"]

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
