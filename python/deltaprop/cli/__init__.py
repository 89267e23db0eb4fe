"""The command line: ``python -m deltaprop demo | train | predict | info`` (also ``deltaprop``).

``main`` returns the exit status: 0 on success, 1 when a command fails (a missing file, a bad
column, a corrupt model: one line on stderr, no traceback), 2 for usage errors (argparse).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .data import CLIError
from .demo import demo
from .info import info
from .train import predict, train

__all__ = ["main", "CLIError"]

_ACTIVATIONS = ["identity", "sigmoid", "tanh", "relu", "leaky_relu"]
_DESCRIPTION = """Train and use deltaprop multilayer perceptrons from the command line.

  deltaprop train data.csv --target label --layers 64,32 --epochs 20 --out model.npz
  deltaprop predict model.npz new.csv --out predictions.csv
"""


def _add_data_arguments(p: argparse.ArgumentParser, predict: bool) -> None:
    p.add_argument("data", help=".npz (arrays X and y), .npy (X) or .csv (header row)")
    target = p.add_mutually_exclusive_group()
    what = ("a column to drop from the features (and score against)" if predict
            else "the target column (.csv: name or index; .npy: index; .npz: array name)")
    target.add_argument("--target", metavar="COLUMN", help=what)
    target.add_argument("--target-file", metavar="FILE", help="targets in their own .npy/.csv")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deltaprop", description=_DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="train on scikit-learn's digits with both backends")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=["float32", "float64"], default="float64",
                   help="float64 (default) lets the backends agree to rounding noise")
    p.add_argument("--threads", type=int, default=None, help="OpenMP threads for native")
    p.set_defaults(run=demo)

    p = sub.add_parser("train", help="train a network on a data file and save it",
                       description="Train a new network on DATA and save it to --out.")
    _add_data_arguments(p, predict=False)
    p.add_argument("--layers", default="64", metavar="W1,W2,...",
                   help="hidden-layer widths (default 64; '' for none)")
    p.add_argument("--activation", choices=_ACTIVATIONS, default="relu")
    p.add_argument("--loss", default="auto",
                   choices=["auto", "cross_entropy", "binary_cross_entropy", "mse"],
                   help="auto (default): cross_entropy for integer labels, mse otherwise")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--optimizer", choices=["sgd", "adam"], default="adam")
    p.add_argument("--lr", type=float, default=None, help="default 0.001 (adam), 0.01 (sgd)")
    p.add_argument("--momentum", type=float, default=0.0, help="for sgd")
    p.add_argument("--validation-split", type=float, default=0.0, metavar="FRACTION",
                   help="hold out this fraction of the samples (seeded) and report on it")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--backend", choices=["native", "reference"], default="native")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="OpenMP threads for native")
    p.add_argument("--progress", action="store_true", help="show a progress bar (tqdm)")
    p.add_argument("--out", default="model.npz", help="model file to write (default model.npz)")
    p.set_defaults(run=train)

    p = sub.add_parser("predict", help="predict with a saved model",
                       description="Write one CSV row of predictions per sample of DATA.")
    p.add_argument("model", help="a model file written by train or deltaprop.save")
    _add_data_arguments(p, predict=True)
    p.add_argument("--out", default=None, help="CSV file to write (default: stdout)")
    p.add_argument("--proba", action="store_true", help="class probabilities, not labels")
    p.add_argument("--backend", choices=["native", "reference"], default=None)
    p.set_defaults(run=predict)

    p = sub.add_parser("info",
                       help="version, instruction sets, threads, OpenMP, compiler, build flags")
    p.set_defaults(run=info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args))
    except BrokenPipeError:
        # The reader went away (``deltaprop predict ... | head``): not an error. Point stdout
        # at devnull so the interpreter's final flush does not complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (CLIError, ValueError, TypeError, OSError) as exc:
        # Library errors say what was expected and what came; that is all a CLI user needs.
        print(f"deltaprop {args.command}: error: {exc}", file=sys.stderr)
        return 1
