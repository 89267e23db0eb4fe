"""deltaprop.sklearn: scikit-learn's own estimator checks, its tools, and parity with its MLP."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

pytest.importorskip("sklearn", minversion="1.6")

from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_digits, load_iris  # noqa: E402
from sklearn.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402
from sklearn.model_selection import (  # noqa: E402
    GridSearchCV,
    cross_val_score,
    train_test_split,
)
from sklearn.neural_network import MLPClassifier as SkClassifier  # noqa: E402
from sklearn.neural_network import MLPRegressor as SkRegressor  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import check_estimator  # noqa: E402

import deltaprop as dp  # noqa: E402
from deltaprop.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

# Several checks fit on tiny data for a few epochs: not converging there is expected, and
# scikit-learn's own MLP warns alike.
no_convergence_warning = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


# The only checks scikit-learn may skip here, as they skip for its own MLPs: the array-API check
# (it needs SCIPY_ARRAY_API set before SciPy is imported; the MLPs take NumPy input only) and
# the decision_function one (MLPClassifier has none, like scikit-learn's).
NOT_APPLICABLE = {
    "check_array_api_input": "SCIPY_ARRAY_API is not set",
    "check_classifiers_multilabel_output_format_decision_function":
        "does not have a decision_function",
}


@no_convergence_warning
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.SkipTestWarning")  # judged below
@pytest.mark.parametrize("estimator", [
    MLPClassifier(random_state=0), MLPRegressor(random_state=0),
    MLPClassifier(random_state=0, dtype="float64"),
    MLPRegressor(random_state=0, dtype="float64", backend="reference"),
], ids=["classifier", "regressor", "classifier-float64", "regressor-float64-reference"])
def test_scikit_learn_estimator_checks(estimator) -> None:
    results = check_estimator(estimator, on_fail=None)
    failed = [(r["check_name"], repr(r["exception"])) for r in results if r["status"] != "passed"
              and NOT_APPLICABLE.get(r["check_name"], "\0") not in str(r["exception"])]
    assert not failed
    assert sum(r["status"] == "passed" for r in results) >= 50  # the checks really ran


def _scaled_split(load) -> tuple:
    X, y = load(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0,
                                                        stratify=y)
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test), y_train, y_test


@no_convergence_warning
@pytest.mark.parametrize("load", [load_iris, load_digits, load_breast_cancer])
def test_test_accuracy_within_two_points_of_scikit_learn(load) -> None:
    X_train, X_test, y_train, y_test = _scaled_split(load)
    ours = MLPClassifier(random_state=0).fit(X_train, y_train).score(X_test, y_test)
    theirs = SkClassifier(random_state=0).fit(X_train, y_train).score(X_test, y_test)
    assert abs(ours - theirs) <= 0.02, (load.__name__, ours, theirs)


@no_convergence_warning
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd_follows_scikit_learn_to_rounding(momentum: float) -> None:
    # Same initial weights (drawn in scikit-learn's order), batches in order, float64: the
    # weights after training agree to rounding — which pins the alpha/batch_rows weight decay.
    X_train, _, y_train, _ = _scaled_split(load_iris)
    settings = dict(hidden_layer_sizes=(7,), solver="sgd", momentum=momentum, alpha=0.5,
                    batch_size=28, shuffle=False, max_iter=3, learning_rate_init=0.05,
                    random_state=1)
    for ours, theirs, y in [(MLPClassifier, SkClassifier, y_train),
                            (MLPRegressor, SkRegressor, np.c_[y_train, -y_train])]:
        a = ours(dtype="float64", **settings).fit(X_train, y)
        b = theirs(**settings).fit(X_train, y)
        for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
            np.testing.assert_allclose(p, q, rtol=0, atol=1e-12)
        np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=2e-2)


@no_convergence_warning
def test_pipeline_grid_search_cross_validation_and_clone() -> None:
    X, y = load_iris(return_X_y=True)
    pipe = make_pipeline(StandardScaler(),
                         MLPClassifier(max_iter=50, learning_rate_init=0.01, random_state=0))
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.6
    grid = GridSearchCV(pipe, {"mlpclassifier__hidden_layer_sizes": [(8,), (16,)],
                               "mlpclassifier__alpha": [1e-4, 1e-2]}, cv=3).fit(X, y)
    assert grid.best_params_["mlpclassifier__hidden_layer_sizes"] in [(8,), (16,)]
    assert grid.score(X, y) > 0.8
    twin = clone(grid.best_estimator_)
    assert twin.get_params()["mlpclassifier__alpha"] == grid.best_params_["mlpclassifier__alpha"]
    assert not hasattr(twin[-1], "coefs_")


@no_convergence_warning
def test_outputs_for_binary_multiclass_multilabel_and_regression() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 4))
    binary = np.where(X[:, 0] > 0, "yes", "no")
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=300, learning_rate_init=0.01,
                        random_state=0).fit(X, binary)
    assert clf.out_activation_ == "logistic" and clf.net_.spec.loss == "binary_cross_entropy"
    assert list(clf.classes_) == ["no", "yes"] and clf.predict_proba(X).shape == (120, 2)
    assert clf.score(X, binary) > 0.9 and set(clf.predict(X)) <= {"no", "yes"}
    labels = (X[:, :3] > 0).astype(int)
    multi = MLPClassifier(hidden_layer_sizes=(16,), max_iter=300, learning_rate_init=0.01,
                        random_state=0).fit(X, labels)
    assert multi.out_activation_ == "logistic" and multi.predict(X).shape == (120, 3)
    three = np.digitize(X[:, 0], [-0.5, 0.5])
    soft = MLPClassifier(hidden_layer_sizes=(8,), max_iter=300, learning_rate_init=0.01,
                        random_state=0).fit(X, three)
    assert soft.out_activation_ == "softmax"
    np.testing.assert_allclose(soft.predict_proba(X).sum(axis=1), 1, rtol=1e-5)
    reg = MLPRegressor(hidden_layer_sizes=(16,), max_iter=300, learning_rate_init=0.01,
                        random_state=0)
    reg.fit(X, X[:, 0] - 2 * X[:, 1])
    assert reg.out_activation_ == "identity" and reg.score(X, X[:, 0] - 2 * X[:, 1]) > 0.9
    assert reg.predict(X.astype(np.float32)).dtype == np.float32  # the input's float type
    assert reg.predict(X).dtype == np.float64


def test_partial_fit_needs_classes_first_then_trains_one_epoch_per_call() -> None:
    X, y = load_iris(return_X_y=True)
    clf = MLPClassifier(hidden_layer_sizes=(10,), random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X, y)
    with pytest.raises(NotFittedError):
        clf.predict(X)
    clf.partial_fit(X[y < 2], y[y < 2], classes=[0, 1, 2])
    for _ in range(20):
        clf.partial_fit(X, y)
    assert clf.n_iter_ == 1 and clf.t_ == 100 + 20 * 150 and len(clf.loss_curve_) == 21
    assert clf.loss_curve_[-1] < clf.loss_curve_[1]  # [0]: two of the classes only
    with pytest.raises(ValueError, match="not in `self.classes_`"):
        clf.partial_fit(X, y + 5)


@no_convergence_warning
def test_early_stopping_holds_out_data_and_keeps_the_best_weights() -> None:
    X_train, X_test, y_train, y_test = _scaled_split(load_digits)
    clf = MLPClassifier(early_stopping=True, n_iter_no_change=3, random_state=0)
    clf.fit(X_train, y_train)
    assert clf.best_loss_ is None and len(clf.validation_scores_) == clf.n_iter_ < 200
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert clf.score(X_test, y_test) > 0.9
    plain = MLPClassifier(tol=1e-2, n_iter_no_change=2, random_state=0).fit(X_train, y_train)
    assert plain.n_iter_ < 50 and plain.best_loss_ == min(plain.loss_curve_)


def test_bad_parameters_raise_before_training() -> None:
    X, y = load_iris(return_X_y=True)
    for bad, error in [({"solver": "lbfgs"}, ValueError), ({"activation": "softplus"}, ValueError),
                       ({"hidden_layer_sizes": (0,)}, ValueError), ({"max_iter": 0}, ValueError),
                       ({"alpha": "big"}, TypeError), ({"dtype": "float16"}, ValueError)]:
        with pytest.raises(error):
            MLPClassifier(**bad).fit(X, y)
    with pytest.raises(ValueError, match="early_stopping"):
        MLPClassifier(early_stopping=True).partial_fit(X, y, classes=[0, 1, 2])


@no_convergence_warning
def test_warm_start_continues_and_pickle_round_trips() -> None:
    X, y = load_iris(return_X_y=True)
    clf = MLPClassifier(hidden_layer_sizes=(10,), max_iter=5, warm_start=True, random_state=0)
    first = clf.fit(X, y).coefs_[0].copy()
    clf.fit(X, y)
    assert not np.array_equal(first, clf.coefs_[0])
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))
    assert isinstance(again.net_, dp.MLP) and again.history_.epochs == 5
    with pytest.warns(ConvergenceWarning):
        MLPRegressor(max_iter=2).fit(X, y)
