"""Learning-rate schedules: the formulas, and fit setting optimizer.lr per epoch."""

from __future__ import annotations

import math

import numpy as np
import pytest

import deltaprop as dp
from deltaprop import schedules


def test_formulas_follow_pytorch() -> None:
    assert [schedules.StepLR(2, 0.5)(e, 1.0) for e in range(5)] == [1, 1, 0.5, 0.5, 0.25]
    assert schedules.MultiStepLR([1, 3], 0.1)(3, 1.0) == pytest.approx(0.01)
    assert schedules.ExponentialLR(0.9)(2, 2.0) == pytest.approx(2 * 0.81)
    cosine = schedules.CosineAnnealingLR(T_max=4, eta_min=0.1)
    assert cosine(0, 1.0) == 1.0 and cosine(4, 1.0) == cosine(9, 1.0) == pytest.approx(0.1)
    assert cosine(2, 1.0) == pytest.approx(0.1 + 0.9 * (1 + math.cos(math.pi / 2)) / 2)
    assert schedules.LambdaLR(lambda e: 1 / (e + 1))(3, 0.4) == pytest.approx(0.1)
    for bad in [lambda: schedules.StepLR(0), lambda: schedules.ExponentialLR(-1.0),
                lambda: schedules.CosineAnnealingLR(3, eta_min=-1)]:
        with pytest.raises(ValueError):
            bad()


def test_fit_sets_the_rate_per_epoch_and_continues_across_calls(backend: str) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3))
    y = X.sum(axis=1)
    step = schedules.StepLR(step_size=2, gamma=0.5)
    opt = dp.SGD(lr=0.1)
    net = dp.MLP([3, 4, 1], loss="mse", backend=backend)
    h1 = net.fit(X, y, epochs=3, optimizer=opt, lr_schedule=step)
    assert h1.lr == [0.1, 0.1, 0.05] and opt.lr == 0.1  # the base rate is back
    h2 = net.fit(X, y, epochs=2, optimizer=opt, lr_schedule=step)
    assert h2.lr == [0.05, 0.025]
    # Five epochs in one call land on the same weights as three then two.
    once = dp.MLP([3, 4, 1], loss="mse", backend=backend)
    once.fit(X, y, epochs=5, optimizer=dp.SGD(lr=0.1), lr_schedule=step)
    for p, q in zip(net.get_weights()[0], once.get_weights()[0]):
        np.testing.assert_allclose(p, q, rtol=1e-6)
    # A plain function gives the rate itself; a bad one fails before training starts.
    h3 = net.fit(X, y, epochs=2, optimizer=opt, lr_schedule=lambda e: 0.01 * (e % 3 + 1))
    assert h3.lr == pytest.approx([0.03, 0.01])
    before = net.get_weights()[0][0].copy()
    with pytest.raises(ValueError, match="positive"):
        net.fit(X, y, epochs=2, optimizer=opt, lr_schedule=lambda e: 0.0)
    with pytest.raises(TypeError, match="callable"):
        net.fit(X, y, epochs=2, optimizer=opt, lr_schedule=0.1)
    np.testing.assert_array_equal(before, net.get_weights()[0][0])
