"""``MLPClassifier`` and ``MLPRegressor``: scikit-learn's estimators, trained by deltaprop."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils.multiclass import type_of_target, unique_labels
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from ._base import BaseMLP

_PARAMETERS = """
    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default=(100,)
        Widths of the hidden layers.
    activation : {"identity", "logistic", "tanh", "relu"}, default="relu"
        Hidden-layer activation ("logistic" is deltaprop's "sigmoid").
    solver : {"adam", "sgd"}, default="adam"
        The optimizer ("lbfgs" is not available).
    alpha : float, default=1e-4
        L2 penalty, scaled as scikit-learn scales it: weight decay ``alpha / batch_rows`` on
        the weights (not the biases).
    batch_size : int or "auto", default="auto"
        Rows per mini-batch; "auto" is ``min(200, n_samples)``.
    learning_rate : {"constant", "invscaling", "adaptive"}, default="constant"
        The rate schedule of ``solver="sgd"``, as in scikit-learn.
    learning_rate_init, power_t, momentum, nesterovs_momentum, beta_1, beta_2, epsilon
        Optimizer settings with scikit-learn's meaning and defaults.
    max_iter : int, default=200
        Epochs at most.
    shuffle : bool, default=True
        Shuffle the rows every epoch.
    random_state : int, RandomState or None
        Seeds the initial weights, the validation split and the epoch shuffle.
    tol, n_iter_no_change : float, int
        Training stops after ``n_iter_no_change`` epochs that improve the loss (or with
        ``early_stopping`` the validation score) by less than ``tol``.
    verbose : bool, default=False
        Print the loss of every epoch.
    warm_start : bool, default=False
        Continue from the previous ``fit``'s weights instead of starting afresh.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data and stop on its score; keeps the best
        weights.
    validation_fraction : float, default=0.1
        The held-out share for ``early_stopping``.
    backend : {"native", "reference"}, default="native"
        deltaprop's C++ kernels or its NumPy reference.
    dtype : {"float32", "float64"}, default="float32"
        The precision the network computes in. float32 by default, deltaprop's fast path;
        predictions come back in the input's float type either way, as scikit-learn's do, and
        each row's outputs do not depend on the rows batched with it, so both precisions pass
        scikit-learn's estimator checks. float64 follows scikit-learn's numbers to rounding.

    Attributes
    ----------
    coefs_, intercepts_ : list of ndarray
        Copies of the weights and biases after the last fit.
    loss_curve_ : list of float
        The training loss (with the L2 term, as scikit-learn reports it) of every epoch.
    n_iter_, t_ : int
        Epochs of the last fit, and samples trained on in all.
    best_loss_, loss_ : float
        The lowest and the last loss; ``best_loss_`` is None with ``early_stopping``.
    validation_scores_, best_validation_score_ : list of float, float
        With ``early_stopping`` only.
    n_features_in_, feature_names_in_, n_layers_, n_outputs_, out_activation_
        As in scikit-learn.
    net_ : deltaprop.MLP
        The trained network (save it with ``deltaprop.save``).
    history_ : deltaprop.History
        Per-epoch loss, time and throughput of the last fit.
"""


class MLPClassifier(ClassifierMixin, BaseMLP):
    """Multi-layer perceptron classifier: scikit-learn's API, deltaprop's training.

    Multiclass targets train a softmax output with cross-entropy; binary targets one sigmoid
    output and multilabel targets (a 0/1 indicator matrix) one sigmoid per label, with binary
    cross-entropy — the outputs scikit-learn's ``MLPClassifier`` uses.
    """ + _PARAMETERS + """    classes_ : ndarray
        The class labels."""

    def _validate_input(self, X: Any, y: Any, reset: bool) -> tuple[np.ndarray, np.ndarray]:
        X, y = validate_data(self, X, y, multi_output=True, dtype=(np.float64, np.float32),
                             reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y

    def _fit(self, X: Any, y: Any, incremental: bool, classes: Any = None) -> MLPClassifier:
        first = not hasattr(self, "classes_") or not (self.warm_start or incremental)
        if incremental and classes is None and not hasattr(self, "classes_"):
            raise ValueError("classes must be passed on the first call to partial_fit.")
        X, y = self._validate_input(X, y, reset=not incremental or not hasattr(self, "net_"))
        if incremental and classes is not None and not hasattr(self, "classes_"):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y if type_of_target(y).startswith("multilabel")
                                      else classes)
            self.classes_ = self._label_binarizer.classes_
        elif first and not incremental:
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            seen = unique_labels(y)
            if self.warm_start and not incremental and set(seen) != set(self.classes_):
                raise ValueError("warm_start can only be used where `y` has the same classes "
                                 f"as in the previous call to fit. Previously got "
                                 f"{self.classes_}, `y` has {seen}")
            if len(np.setdiff1d(seen, self.classes_)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has "
                                 f"{self.classes_}. 'y' has {seen}.")
        if len(self.classes_) < 2 and self._label_binarizer.y_type_ != "multilabel-indicator":
            raise ValueError("Classifier can't train when only one class is present: "
                             f"got only {self.classes_}")
        Y = self._label_binarizer.transform(y)
        multiclass = self._label_binarizer.y_type_ == "multiclass"
        self.out_activation_ = "softmax" if multiclass else "logistic"
        loss = "cross_entropy" if multiclass else "binary_cross_entropy"
        stratify = y if self.early_stopping and y.ndim == 1 else None
        return self._fit_arrays(X, Y, stratify, loss, incremental)

    def fit(self, X: Any, y: Any) -> MLPClassifier:
        """Train on ``X`` (n_samples, n_features) and labels ``y`` (or a 0/1 label matrix)."""
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> MLPClassifier:
        """One epoch over ``(X, y)``; ``classes`` lists every label on the first call."""
        return self._fit(X, y, incremental=True, classes=classes)

    def _outputs(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, dtype=(np.float64, np.float32), reset=False)
        A = self._forward(X)
        return A.ravel() if self.n_outputs_ == 1 else A

    def predict(self, X: Any) -> np.ndarray:
        """Class labels (a 0/1 matrix for multilabel targets)."""
        outputs = self._outputs(X)  # first: it raises NotFittedError before fit
        return self._label_binarizer.inverse_transform(outputs)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probabilities, one column per class in the order of ``classes_``."""
        A = self._outputs(X)
        return np.vstack([1 - A, A]).T if A.ndim == 1 else A

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """The logarithm of :meth:`predict_proba`."""
        proba = self.predict_proba(X)
        return np.log(proba, out=proba)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, BaseMLP):
    """Multi-layer perceptron regressor: squared error, identity output, scikit-learn's API.
    """ + _PARAMETERS

    def _fit(self, X: Any, y: Any, incremental: bool) -> MLPRegressor:
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True,
                             dtype=(np.float64, np.float32),
                             reset=not incremental or not hasattr(self, "net_"))
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        self.out_activation_ = "identity"
        return self._fit_arrays(X, y.reshape(len(y), -1), None, "mse", incremental)

    def fit(self, X: Any, y: Any) -> MLPRegressor:
        """Train on ``X`` (n_samples, n_features) and targets ``y`` (n_samples[, n_outputs])."""
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X: Any, y: Any) -> MLPRegressor:
        """One epoch over ``(X, y)``, continuing from the current weights."""
        return self._fit(X, y, incremental=True)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted targets, shape (n_samples,) for one output."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=(np.float64, np.float32), reset=False)
        A = self._forward(X)
        return A.ravel() if A.shape[1] == 1 else A

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
