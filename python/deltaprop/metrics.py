"""How well outputs match targets: accuracy for classifiers, R² for regressors.

Both take the network's outputs ``A`` and the dense targets ``T`` that
:func:`deltaprop.validation.as_targets` produced, so labels and target rows score alike.
"""

from __future__ import annotations

import numpy as np

from .spec import NetSpec


def score_outputs(spec: NetSpec, A: np.ndarray, T: np.ndarray) -> float:
    """Accuracy (classification) or R² (mse) of outputs ``A`` against dense targets ``T``."""
    if spec.loss == "cross_entropy":
        return float(np.mean(A.argmax(axis=1) == T.argmax(axis=1)))
    if spec.loss == "binary_cross_entropy":
        # A sample counts as right when every output is (subset accuracy, as scikit-learn).
        return float(np.mean(((A >= 0.5) == (T >= 0.5)).all(axis=1)))
    # R² per output column, averaged (scikit-learn's "uniform_average"); computed in float64.
    # R² does not change when A and T are scaled alike: dividing by the largest magnitude keeps
    # the squares of values beyond 1e154 from overflowing (and of those below 1e-154 from
    # underflowing); ordinary values are left alone, so their R² is scikit-learn's to the bit.
    # Outputs that did overflow (inf) give R² = -inf, not a RuntimeWarning.
    A64, T64 = A.astype(np.float64), T.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        scale = max(float(np.abs(A64).max()), float(np.abs(T64).max()))
        if np.isfinite(scale) and scale > 0 and not 1e-150 < scale < 1e150:
            A64, T64 = A64 / scale, T64 / scale
        ss_res = ((T64 - A64) ** 2).sum(axis=0)
        ss_tot = ((T64 - T64.mean(axis=0)) ** 2).sum(axis=0)
        # A constant column: perfect fit scores 1, anything else 0 (scikit-learn's force_finite).
        safe = np.where(ss_tot > 0, ss_tot, 1.0)
        r2 = np.where(ss_tot > 0, 1 - ss_res / safe, np.where(ss_res == 0, 1.0, 0.0))
        mean = r2.mean()
        if np.isinf(mean) and np.isfinite(r2).all():
            # Finite R² near -1e308 overflow their sum, not their mean: divide first. Only
            # then, so every other mean is scikit-learn's to the bit.
            mean = (r2 / r2.size).sum()
    return float(mean)
