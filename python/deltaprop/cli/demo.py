"""``deltaprop demo``: train one network on scikit-learn's digits with both backends."""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from .. import MLP, SGD, cpu_info, get_num_threads, set_num_threads

# The demo's promise, checked on every run: digits is easy enough that a small MLP must clear
# this, and float64 backends that disagree by more than rounding noise have a bug.
MIN_ACCURACY = 0.95
MAX_WEIGHT_DIFFERENCE = 1e-8


def _load_digits(seed: int) -> tuple[np.ndarray, ...]:
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise SystemExit("deltaprop demo trains on scikit-learn's digits data set, which ships "
                         "with scikit-learn: pip install scikit-learn") from None
    digits = load_digits()
    X = digits.data / 16.0  # pixel intensities 0..16 -> [0, 1]
    return tuple(train_test_split(X, digits.target, test_size=0.25, stratify=digits.target,
                                  random_state=seed))


def demo(args: argparse.Namespace) -> int:
    """Train the same network on both backends and compare them."""
    if args.threads is not None:
        set_num_threads(args.threads)
    X_train, X_test, y_train, y_test = _load_digits(args.seed)
    print(f"digits: {len(X_train)} training and {len(X_test)} test images of 8x8 pixels, "
          f"10 classes")
    sizes = [64, 128, 64, 10]
    print(f"network: {sizes}, relu, softmax + cross-entropy, {args.dtype}, SGD(lr={args.lr}, "
          f"momentum=0.9), {args.epochs} epochs of batches of {args.batch_size}, seed {args.seed}")
    print(f"native runtime: {cpu_info().get('isa', '?')}, {get_num_threads()} thread(s)\n")

    results = {}
    for backend in ("native", "reference"):
        net = MLP(sizes, activation="relu", loss="cross_entropy", dtype=args.dtype,
                  backend=backend, seed=args.seed)
        start = time.perf_counter()
        net.fit(X_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                optimizer=SGD(lr=args.lr, momentum=0.9))
        seconds = time.perf_counter() - start
        accuracy = net.score(X_test, y_test)
        results[backend] = (net, seconds, accuracy)
        print(f"{backend:>9}: test accuracy {accuracy:.4f}, training time {seconds:.3f} s")

    native, reference = results["native"][0], results["reference"][0]
    speedup = results["reference"][1] / max(results["native"][1], 1e-9)
    wn, bn = native.get_weights()
    wr, br = reference.get_weights()
    diff = max(float(np.abs(a - b).max()) for a, b in zip(wn + (bn or []), wr + (br or [])))
    print(f"\nspeedup native/reference: {speedup:.1f}x")
    print(f"max |weight difference| between the backends after training: {diff:.3g}")

    accuracy = results["native"][2]
    ok = True
    if accuracy < MIN_ACCURACY:
        print(f"FAILED: native test accuracy {accuracy:.4f} < {MIN_ACCURACY}", file=sys.stderr)
        ok = False
    limit = MAX_WEIGHT_DIFFERENCE if args.dtype == "float64" else 1e-2
    if not diff <= limit:
        print(f"FAILED: the backends' weights differ by {diff:.3g} > {limit:g}", file=sys.stderr)
        ok = False
    return 0 if ok else 1
