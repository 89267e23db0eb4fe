"""deltaprop: multilayer perceptrons trained on the CPU by SIMD + OpenMP C++ kernels, with a
pure-NumPy reference backend that every native result can be checked against.

See ``README.md`` for a tour; the public names are those in ``__all__``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from . import callbacks, ops, schedules
from .callbacks import EarlyStopping, StopTraining
from .errors import TrainingDiverged
from .gradcheck import check_gradients
from .history import History
from .io import load, save
from .mlp import MLP
from .optim import SGD, Adam
from .runtime import cpu_info, get_num_threads, set_num_threads

try:
    __version__ = version("deltaprop")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0.1.0"

__all__ = [
    "MLP",
    "SGD",
    "Adam",
    "History",
    "TrainingDiverged",
    "ops",
    "callbacks",
    "schedules",
    "EarlyStopping",
    "StopTraining",
    "check_gradients",
    "save",
    "load",
    "set_num_threads",
    "get_num_threads",
    "cpu_info",
    "__version__",
]
