"""What the two estimators share: parameters, their checks, and the training loop.

The loop is scikit-learn's ``_fit_stochastic`` (``sklearn/neural_network/_multilayer_perceptron
.py``) expressed with deltaprop's parts: the epochs run in one :meth:`deltaprop.MLP.fit` call,
and a callback does what scikit-learn does between epochs — record ``loss_curve_``, apply the
``tol``/``n_iter_no_change`` stopping rule (on the training loss, or on the validation score with
``early_stopping``), keep the best weights, and update the ``invscaling``/``adaptive`` rate.
"""

from __future__ import annotations

import numbers
import warnings
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state

from ..callbacks import Callback
from ..mlp import MLP
from ..optim import SGD, Adam

# scikit-learn's activation names -> deltaprop's.
ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}


def _check_number(est: Any, name: str, low: float, high: float = np.inf,
                  low_open: bool = False, high_open: bool = False, integer: bool = False) -> None:
    value = getattr(est, name)
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError(f"{name} must be {'an int' if integer else 'a number'}; got "
                        f"{type(value).__name__} {value!r}")
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if not (above and below):
        lo, hi = "(" if low_open else "[", ")" if high_open else "]"
        raise ValueError(f"{name} must be in {lo}{low}, {high}{hi}; got {value!r}")


def _check_choice(est: Any, name: str, choices: tuple) -> None:
    value = getattr(est, name)
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}; got {value!r}")


class BaseMLP(BaseEstimator):
    """Shared by MLPClassifier and MLPRegressor (parameters are documented there)."""

    def __init__(self, hidden_layer_sizes: Any = (100,), activation: str = "relu", *,
                 solver: str = "adam", alpha: float = 0.0001, batch_size: Any = "auto",
                 learning_rate: str = "constant", learning_rate_init: float = 0.001,
                 power_t: float = 0.5, max_iter: int = 200, shuffle: bool = True,
                 random_state: Any = None, tol: float = 1e-4, verbose: bool = False,
                 warm_start: bool = False, momentum: float = 0.9,
                 nesterovs_momentum: bool = True, early_stopping: bool = False,
                 validation_fraction: float = 0.1, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-8, n_iter_no_change: int = 10, backend: str = "native",
                 dtype: str = "float32") -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.backend = backend
        self.dtype = dtype

    # -- checks ------------------------------------------------------------------------------

    def _check_params(self) -> list[int]:
        """Raise for a bad parameter; return the hidden layer sizes as a list."""
        hidden = self.hidden_layer_sizes
        hidden = [hidden] if isinstance(hidden, numbers.Integral) else list(hidden)
        if any(isinstance(h, bool) or not isinstance(h, numbers.Integral) or h <= 0
               for h in hidden):
            raise ValueError(f"hidden_layer_sizes must hold positive ints; got {hidden!r}")
        _check_choice(self, "activation", tuple(ACTIVATIONS))
        if self.solver == "lbfgs":
            raise ValueError("solver='lbfgs' is not available in deltaprop; use 'adam' or 'sgd'")
        _check_choice(self, "solver", ("sgd", "adam"))
        _check_choice(self, "learning_rate", ("constant", "invscaling", "adaptive"))
        if self.batch_size != "auto":
            _check_number(self, "batch_size", 1, integer=True)
        _check_number(self, "alpha", 0.0)
        _check_number(self, "learning_rate_init", 0.0, low_open=True)
        _check_number(self, "power_t", 0.0)
        _check_number(self, "max_iter", 1, integer=True)
        _check_number(self, "tol", 0.0)
        _check_number(self, "momentum", 0.0, 1.0)
        _check_number(self, "validation_fraction", 0.0, 1.0, low_open=True, high_open=True)
        _check_number(self, "beta_1", 0.0, 1.0, high_open=True)
        _check_number(self, "beta_2", 0.0, 1.0, high_open=True)
        _check_number(self, "epsilon", 0.0, low_open=True)
        _check_number(self, "n_iter_no_change", 1, integer=True)
        _check_choice(self, "backend", ("native", "reference"))
        _check_choice(self, "dtype", ("float32", "float64"))
        return hidden

    # -- training ----------------------------------------------------------------------------

    def _initialize(self, hidden: list[int], n_features: int, n_outputs: int, loss: str) -> None:
        """A fresh network with scikit-learn's initialisation, and fresh fit attributes."""
        rng = self._random_state
        sizes = [n_features, *hidden, n_outputs]
        # Glorot-uniform weights and biases, bound sqrt(6 / (fan_in + fan_out)) (2 for
        # logistic), drawn as scikit-learn draws them, so the start matches its own estimator.
        factor = 2.0 if self.activation == "logistic" else 6.0
        weights, biases = [], []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            bound = np.sqrt(factor / (fan_in + fan_out))
            weights.append(rng.uniform(-bound, bound, (fan_in, fan_out)))
            biases.append(rng.uniform(-bound, bound, fan_out))
        self.net_ = MLP(sizes, activation=ACTIVATIONS[self.activation], loss=loss,
                        dtype=self.dtype, backend=self.backend,
                        seed=int(rng.randint(np.iinfo(np.int32).max)))
        self.net_.set_weights(weights, biases)
        self.n_layers_ = len(sizes)
        self.n_outputs_ = n_outputs
        self.n_iter_ = 0
        self.t_ = 0
        self.loss_curve_: list[float] = []
        self._no_improvement_count = 0
        self._optimizer: SGD | Adam | None = None
        if self.early_stopping:
            self.validation_scores_: list[float] | None = []
            self.best_validation_score_: float | None = -np.inf
            self.best_loss_: float | None = None
        else:
            self.validation_scores_ = self.best_validation_score_ = None
            self.best_loss_ = np.inf

    def _new_optimizer(self) -> SGD | Adam:
        if self.solver == "sgd":
            return SGD(lr=self.learning_rate_init, momentum=self.momentum,
                       nesterov=bool(self.nesterovs_momentum) and self.momentum > 0)
        return Adam(lr=self.learning_rate_init, beta1=self.beta_1, beta2=self.beta_2,
                    eps=self.epsilon)

    def _train(self, X: np.ndarray, T: np.ndarray, stratify: np.ndarray | None,
               incremental: bool) -> None:
        """Run the epochs of one ``fit`` (``max_iter``) or ``partial_fit`` (one) call."""
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        if not incremental or self._optimizer is None:
            self._optimizer = self._new_optimizer()
        val = None
        if self.early_stopping:
            X, X_val, T, T_val = train_test_split(
                X, T, random_state=self._random_state, test_size=self.validation_fraction,
                stratify=stratify)
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase "
                                 "'validation_fraction' or the size of your dataset.")
            val = (X_val, T_val)
        n = X.shape[0]
        if self.batch_size == "auto":
            batch = min(200, n)
        else:
            if self.batch_size > n:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                              "going to be clipped", stacklevel=5)
            batch = int(np.clip(self.batch_size, 1, n))
        # scikit-learn's batch gradient is (Aᵀ D + alpha·W) / batch_rows: weight decay
        # alpha / batch_rows on top of the mean gradient deltaprop computes.
        self._optimizer.weight_decay = self.alpha / batch
        monitor = _EpochEnd(self, n, batch)
        self.n_iter_ = 0
        self.history_ = self.net_.fit(
            X, T, epochs=1 if incremental else self.max_iter, batch_size=batch,
            optimizer=self._optimizer, shuffle=bool(self.shuffle), validation_data=val,
            callback=monitor)
        if self.early_stopping:
            self.net_.set_weights(*monitor.best_weights)
        elif not incremental and not monitor.stopped and self.n_iter_ == self.max_iter:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached "
                          "and the optimization hasn't converged yet.", ConvergenceWarning,
                          stacklevel=5)
        weights, biases = self.net_.get_weights()
        self.coefs_, self.intercepts_ = weights, biases

    def _fit_arrays(self, X: np.ndarray, T: np.ndarray, stratify: np.ndarray | None,
                    loss: str, incremental: bool) -> Any:
        hidden = self._check_params()
        X = np.ascontiguousarray(X, dtype=self.dtype)
        T = np.ascontiguousarray(T, dtype=self.dtype)
        fresh = not hasattr(self, "net_") or not (self.warm_start or incremental)
        if fresh:
            self._random_state = check_random_state(self.random_state)
            self._initialize(hidden, X.shape[1], T.shape[1], loss)
        elif self.net_.sizes != (X.shape[1], *hidden, T.shape[1]):
            raise ValueError(f"the network has layer sizes {list(self.net_.sizes)}; this data "
                             f"and hidden_layer_sizes need {[X.shape[1], *hidden, T.shape[1]]}")
        self._train(X, T, stratify, incremental)
        return self

    def _forward(self, X: np.ndarray) -> np.ndarray:
        # Outputs come in the input's float type (float32 or float64), as scikit-learn's do,
        # whichever precision the network computes in.
        A = self.net_.forward(np.ascontiguousarray(X, dtype=self.dtype))
        return A.astype(X.dtype, copy=False)


class _EpochEnd(Callback):
    """scikit-learn's bookkeeping between epochs (its ``_update_no_improvement_count``)."""

    def __init__(self, est: BaseMLP, n_samples: int, batch: int) -> None:
        self.est, self.n_samples = est, n_samples
        self.n_batches = -(-n_samples // batch)
        self.stopped = False
        self.best_weights = est.net_.get_weights()
        self._last_squares = self._squares(est.net_) if est.alpha > 0 else 0.0

    @staticmethod
    def _squares(net: MLP) -> float:
        return sum(float(np.dot(W.ravel(), W.ravel())) for W in net.get_weights()[0])

    def on_epoch_end(self, epoch: int, history: Any, net: MLP) -> bool:
        est = self.est
        # scikit-learn's squared error is averaged over outputs too; deltaprop's mse sums them.
        loss = history.loss[-1] / (est.n_outputs_ if net.spec.loss == "mse" else 1)
        if est.alpha > 0:
            # Each batch's loss carries alpha/2·‖W‖²/batch_rows, weighted by batch_rows/n, with
            # the weights before that batch. The epoch's batches are one C++ call, so ‖W‖² is
            # taken as the mean of its values at the start and the end of the epoch.
            squares = self._squares(net)
            mean_squares, self._last_squares = (self._last_squares + squares) / 2, squares
            loss += 0.5 * est.alpha * mean_squares * self.n_batches / self.n_samples
        est.n_iter_ += 1
        est.t_ += self.n_samples
        est.loss_ = loss
        est.loss_curve_.append(loss)
        if est.verbose:
            print(f"Iteration {est.n_iter_}, loss = {loss:.8f}")
        if est.early_stopping:
            score = history.val_score[-1]
            est.validation_scores_.append(score)
            if est.verbose:
                print(f"Validation score: {score:f}")
            improved = score >= est.best_validation_score_ + est.tol
            if score > est.best_validation_score_:
                est.best_validation_score_ = score
                self.best_weights = net.get_weights()
        else:
            improved = loss <= est.best_loss_ - est.tol
            est.best_loss_ = min(est.best_loss_, loss)
        est._no_improvement_count = 0 if improved else est._no_improvement_count + 1
        optimizer = est._optimizer
        if est.solver == "sgd" and est.learning_rate == "invscaling":
            optimizer.lr = est.learning_rate_init / (est.t_ + 1) ** est.power_t
        if est._no_improvement_count > est.n_iter_no_change:
            what = "Validation score" if est.early_stopping else "Training loss"
            message = (f"{what} did not improve more than tol={est.tol:f} for "
                       f"{est.n_iter_no_change} consecutive epochs.")
            if (est.solver == "sgd" and est.learning_rate == "adaptive"
                    and optimizer.lr > 1e-6):
                optimizer.lr /= 5.0
                est._no_improvement_count = 0
                if est.verbose:
                    print(f"{message} Setting learning rate to {optimizer.lr:f}")
                return False
            if est.verbose:
                print(message + " Stopping.")
            self.stopped = True
            return True
        return False
