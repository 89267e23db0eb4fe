"""Classify scikit-learn's 8x8 handwritten digits with a deltaprop MLP.

    python examples/digits_classification.py          # about a second
    DELTAPROP_EXAMPLES_FAST=1 python examples/...     # a few epochs (what the tests run)

Shows the everyday loop: split and scale the data, build an MLP, ``fit`` with validation data
and an optimizer, read the :class:`~deltaprop.History`, score on held-out data, look at the
mistakes, and save the model. Needs scikit-learn (for the data set only).
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import deltaprop as dp

FAST = os.environ.get("DELTAPROP_EXAMPLES_FAST") == "1"
EPOCHS = 3 if FAST else 40


def main() -> float:
    digits = load_digits()
    X = digits.data / 16.0  # pixel intensities 0..16 -> [0, 1]
    X_train, X_test, y_train, y_test = train_test_split(
        X, digits.target, test_size=0.25, stratify=digits.target, random_state=0)

    net = dp.MLP([64, 128, 64, 10], activation="relu", loss="cross_entropy", seed=0)
    print(net)
    history = net.fit(X_train, y_train, epochs=EPOCHS, batch_size=32,
                      optimizer=dp.Adam(lr=2e-3), validation_data=(X_test, y_test))
    for epoch in sorted({0, len(history.loss) // 2, len(history.loss) - 1}):
        print(f"epoch {epoch + 1:3d}: loss {history.loss[epoch]:.4f}, "
              f"val_loss {history.val_loss[epoch]:.4f}, val accuracy "
              f"{history.val_score[epoch]:.4f}, {history.samples_per_second[epoch]:,.0f} "
              "samples/s")

    accuracy = net.score(X_test, y_test)
    predicted = net.predict(X_test)
    confusion = np.zeros((10, 10), dtype=int)
    np.add.at(confusion, (y_test, predicted), 1)
    np.fill_diagonal(confusion, 0)
    true, pred = np.unravel_index(confusion.argmax(), confusion.shape)
    print(f"test accuracy {accuracy:.4f}; most frequent mistake: {true} read as {pred} "
          f"({confusion[true, pred]} times)")
    confidence = net.predict_proba(X_test).max(axis=1)
    right = predicted == y_test
    wrong = confidence[~right].mean() if not right.all() else float("nan")
    print(f"mean confidence when right {confidence[right].mean():.3f}, when wrong {wrong:.3f}")

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "digits.npz")
        dp.save(net, path)
        same = dp.load(path)
        assert np.array_equal(same.predict(X_test), predicted)
        print(f"saved and reloaded {os.path.getsize(path):,} bytes: identical predictions")
    if not FAST:
        assert accuracy > 0.95, accuracy
    return accuracy


if __name__ == "__main__":
    main()
