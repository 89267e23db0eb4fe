"""scikit-learn estimators trained by deltaprop: switching costs one import.

::

    from deltaprop.sklearn import MLPClassifier   # instead of sklearn.neural_network

Parameters are named and defaulted as in ``sklearn.neural_network.MLPClassifier`` and
``MLPRegressor`` where they mean the same (``solver`` is "adam" or "sgd"; there is no "lbfgs"),
plus ``backend`` and ``dtype``. The estimators pass ``sklearn.utils.estimator_checks`` and work in
``Pipeline``, ``GridSearchCV``, ``cross_val_score`` and ``clone``. Needs scikit-learn ≥ 1.6.
"""

from __future__ import annotations

try:
    from sklearn.utils.validation import validate_data  # noqa: F401 (new in 1.6)
except ImportError:
    raise ImportError("deltaprop.sklearn needs scikit-learn >= 1.6: "
                      "pip install 'scikit-learn>=1.6'") from None

from ._estimators import MLPClassifier, MLPRegressor

__all__ = ["MLPClassifier", "MLPRegressor"]
