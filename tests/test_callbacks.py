"""fit's control: per-epoch callbacks, StopTraining and early stopping."""

from __future__ import annotations

import numpy as np
import pytest

import deltaprop as dp


def blobs(n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 5))
    return X, (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)


def test_callbacks_see_the_net_and_any_one_can_stop(backend: str) -> None:
    X, y = blobs()
    net = dp.MLP([5, 4, 3], backend=backend)
    seen, two = [], []

    def full(epoch, history, model):
        seen.append((epoch, history.epochs, model is net))

    def stop_at_two(epoch, history):
        two.append(epoch)
        return epoch == 2

    hist = net.fit(X, y, epochs=10, callback=[full, stop_at_two])
    assert hist.epochs == 3 and seen == [(0, 1, True), (1, 2, True), (2, 3, True)]
    assert two == [0, 1, 2]

    def raises(epoch, history, model):
        if epoch == 1:
            raise dp.StopTraining

    assert net.fit(X, y, epochs=10, callback=raises).epochs == 2
    with pytest.raises(TypeError, match="callable"):
        net.fit(X, y, callback=[full, 3])


def test_early_stopping_waits_patience_epochs_and_restores_the_best_weights() -> None:
    X, y = blobs()
    net = dp.MLP([5, 8, 3], seed=1)
    values = iter([1.0, 0.5, 0.6, 0.55, 0.7, 0.2])
    snapshots = []

    def fake_loss(epoch, history, model):  # runs first: the monitor reads this value
        history.val_loss[-1] = next(values)
        snapshots.append(model.get_weights()[0][0].copy())

    stopper = dp.EarlyStopping(patience=2, restore_best_weights=True)
    hist = net.fit(X, y, epochs=10, validation_data=(X, y), callback=[fake_loss, stopper])
    assert hist.epochs == 4 and stopper.best == 0.5 and stopper.best_epoch == 1
    assert stopper.stopped_epoch == 3
    np.testing.assert_array_equal(net.get_weights()[0][0], snapshots[1])
    # min_delta: an improvement by less does not count; "auto" watches loss without val data.
    slow = dp.EarlyStopping(patience=0, min_delta=1e9)
    assert net.fit(X, y, epochs=10, callback=slow).epochs == 2 and slow.best_epoch == 0


def test_early_stopping_on_a_score_maximises_and_needs_validation_data() -> None:
    X, y = blobs()
    net = dp.MLP([5, 8, 3], seed=1)
    stopper = dp.EarlyStopping(monitor="val_score", patience=3)
    hist = net.fit(X, y, epochs=200, optimizer=dp.SGD(lr=0.5), validation_data=(X, y),
                   callback=stopper)
    assert hist.epochs < 200 and stopper.best == max(hist.val_score)
    with pytest.raises(ValueError, match="validation_data"):
        net.fit(X, y, epochs=2, callback=dp.EarlyStopping(monitor="val_loss"))
    for bad in [dict(monitor="accuracy"), dict(patience=-1), dict(min_delta=-1.0)]:
        with pytest.raises(ValueError):
            dp.EarlyStopping(**bad)
