"""Regression: predict disease progression in scikit-learn's diabetes data set.

    python examples/regression.py
    DELTAPROP_EXAMPLES_FAST=1 python examples/regression.py   # a few epochs

442 patients, 10 standardised measurements each, one continuous target. An MLP with loss
``"mse"`` and an identity output is a regressor: ``predict`` returns its outputs and ``score``
is R². The target is standardised for training (networks learn faster on targets of unit
scale) and mapped back for reporting. Compared with a linear least-squares fit, which is hard
to beat on this small, mostly linear data set: the point is the workflow, not the score. A
small network with weight decay, trained for a few dozen epochs, matches it; a bigger one, or
longer training, overfits 331 training samples (try it, and watch ``history.val_score``).
"""

from __future__ import annotations

import os

import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.model_selection import train_test_split

import deltaprop as dp

FAST = os.environ.get("DELTAPROP_EXAMPLES_FAST") == "1"
EPOCHS = 5 if FAST else 50


def r2(y: np.ndarray, pred: np.ndarray) -> float:
    return 1.0 - float(((y - pred) ** 2).sum() / ((y - y.mean()) ** 2).sum())


def main() -> float:
    X, y = load_diabetes(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
    mean, std = X_train.mean(axis=0), X_train.std(axis=0)
    X_train, X_test = (X_train - mean) / std, (X_test - mean) / std
    y_mean, y_std = y_train.mean(), y_train.std()

    net = dp.MLP([10, 16, 1], activation="tanh", loss="mse", dtype="float64", seed=0)
    history = net.fit(X_train, (y_train - y_mean) / y_std, epochs=EPOCHS, batch_size=32,
                      optimizer=dp.SGD(lr=0.01, momentum=0.9, weight_decay=1e-2),
                      validation_data=(X_test, (y_test - y_mean) / y_std))
    print(f"{net}\ntrained {len(history.loss)} epochs: final loss {history.loss[-1]:.4f}, "
          f"validation R² {history.val_score[-1]:.3f}")

    predicted = net.predict(X_test)[:, 0] * y_std + y_mean  # back to the target's units
    design = np.column_stack([X_train, np.ones(len(X_train))])
    coef = np.linalg.lstsq(design, y_train, rcond=None)[0]
    linear = np.column_stack([X_test, np.ones(len(X_test))]) @ coef
    score = r2(y_test, predicted)
    print(f"test R²: MLP {score:.3f}, linear least squares {r2(y_test, linear):.3f}")
    print(f"mean absolute error: MLP {np.abs(predicted - y_test).mean():.1f}, "
          f"linear {np.abs(linear - y_test).mean():.1f} "
          f"(targets range from {y.min():.0f} to {y.max():.0f})")
    if not FAST:
        assert score > 0.3, score
    return score


if __name__ == "__main__":
    main()
