"""``deltaprop train`` and ``deltaprop predict``: from data files to a model file and back."""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time

import numpy as np

from .. import MLP, SGD, Adam, load, save, set_num_threads
from .data import CLIError, load_data


def _layers(text: str) -> list[int]:
    """``"128,64"`` -> ``[128, 64]``; ``""`` -> no hidden layer."""
    if not text.strip():
        return []
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        raise CLIError(f"--layers must be comma-separated widths like 128,64; got {text!r}"
                       ) from None
    if any(n < 1 for n in sizes):
        raise CLIError(f"--layers widths must be positive; got {text!r}")
    return sizes


def _infer_loss(y: np.ndarray) -> str:
    """Integer labels mean classification; anything else regression."""
    integral = y.ndim == 1 and np.all(np.isfinite(y)) and np.all(y == np.round(y))
    return "cross_entropy" if integral and y.min() >= 0 else "mse"


def _outputs(y: np.ndarray, loss: str) -> int:
    if y.ndim == 2:
        return y.shape[1]
    if loss != "cross_entropy":
        return 1
    if not (np.all(y == np.round(y)) and y.min() >= 0):
        raise CLIError("cross_entropy needs integer class labels 0..K-1 as the target "
                       f"(found values such as {y[(y != np.round(y)) | (y < 0)][:3].tolist()})")
    return int(y.max()) + 1


def _split(X: np.ndarray, y: np.ndarray, fraction: float, seed: int) -> tuple:
    """A seeded random hold-out of ``fraction`` of the rows (none when 0)."""
    if not 0.0 <= fraction < 1.0:
        raise CLIError(f"--validation-split must be in [0, 1); got {fraction}")
    n_val = int(round(fraction * len(X)))
    if fraction > 0 and not 1 <= n_val < len(X):
        raise CLIError(f"--validation-split {fraction} of {len(X)} samples leaves no "
                       "training or no validation samples")
    order = np.random.default_rng(seed).permutation(len(X))
    val, tr = order[:n_val], order[n_val:]
    return X[tr], y[tr], (X[val], y[val]) if n_val else None


def train(args: argparse.Namespace) -> int:
    """Train a new network on a data file and save it."""
    if args.threads is not None:
        set_num_threads(args.threads)
    X, y = load_data(args.data, args.target, args.target_file)
    loss = _infer_loss(y) if args.loss == "auto" else args.loss
    sizes = [X.shape[1], *_layers(args.layers), _outputs(y, loss)]
    net = MLP(sizes, activation=args.activation, loss=loss, dtype=args.dtype,
              backend=args.backend, seed=args.seed)
    optimizer = (Adam(lr=args.lr if args.lr is not None else 1e-3) if args.optimizer == "adam"
                 else SGD(lr=args.lr if args.lr is not None else 0.01, momentum=args.momentum))
    X_train, y_train, validation = _split(X, y, args.validation_split, args.seed)
    print(f"training {net!r}\n  on {len(X_train)} samples of {X.shape[1]} features"
          + (f", validating on {len(validation[0])}" if validation else "")
          + f", {args.epochs} epochs of batches of {args.batch_size}, {optimizer}")
    start = time.perf_counter()
    history = net.fit(X_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                      optimizer=optimizer, validation_data=validation, progress=args.progress)
    seconds = time.perf_counter() - start
    metric = "R^2" if loss == "mse" else "accuracy"
    report = f"loss {history.loss[-1]:.4g}, training {metric} {net.score(X_train, y_train):.4f}"
    if validation:
        report += f", validation loss {history.val_loss[-1]:.4g}, " \
                  f"validation {metric} {history.val_score[-1]:.4f}"
    print(f"after {args.epochs} epochs ({seconds:.2f} s): {report}")
    save(net, args.out, optimizer=optimizer)
    print(f"saved to {args.out}")
    return 0


def predict(args: argparse.Namespace) -> int:
    """Write a saved network's predictions (or class probabilities) for a data file."""
    if not os.path.exists(args.model):
        raise CLIError(f"{args.model}: no such model file")
    net = load(args.model, backend=args.backend)
    X, y = load_data(args.data, args.target, args.target_file, need_target=False)
    if X.shape[1] != net.sizes[0]:
        hint = ("; if it includes the target column, name it with --target"
                if X.shape[1] == net.sizes[0] + 1 else "")
        raise CLIError(f"{args.data} has {X.shape[1]} feature columns; the model expects "
                       f"{net.sizes[0]}{hint}")
    if args.proba:
        if net.spec.loss == "mse":
            raise CLIError("--proba needs a classifier; this model is a regressor (loss mse)")
        values = net.predict_proba(X)
        header = [f"p{k}" for k in range(values.shape[1])]
    else:
        values = net.predict(X)
        values = values[:, None] if values.ndim == 1 else values
        header = (["prediction"] if values.shape[1] == 1
                  else [f"prediction{k}" for k in range(values.shape[1])])
    out = open(args.out, "w", newline="") if args.out else sys.stdout
    try:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        # repr-exact floats (17 significant digits) so predictions survive the round trip
        fmt = (lambda v: repr(float(v))) if values.dtype.kind == "f" else str
        writer.writerows([fmt(v) for v in row] for row in values)
    finally:
        if args.out:
            out.close()
    if y is not None:
        metric = "R^2" if net.spec.loss == "mse" else "accuracy"
        print(f"{metric} on {args.data}: {net.score(X, y):.4f}", file=sys.stderr)
    if args.out:
        print(f"wrote {len(values)} predictions to {args.out}", file=sys.stderr)
    return 0
