"""Reading the command line's data files: ``.npz`` (arrays), ``.npy`` and ``.csv`` tables.

Every problem a user can cause — a missing file, an unknown format, a column that does not
exist or is not numeric, rows of different lengths — is a :class:`CLIError` with a message that
names the file, so the command line prints one line instead of a traceback.
"""

from __future__ import annotations

import csv
import os

import numpy as np

FORMATS = (".npz", ".npy", ".csv")


class CLIError(Exception):
    """A problem with the command line's arguments or files, reported without a traceback."""


def _check_file(path: str) -> str:
    if not os.path.exists(path):
        raise CLIError(f"{path}: no such file")
    if os.path.isdir(path):
        raise CLIError(f"{path} is a directory, not a data file")
    ext = os.path.splitext(path)[1].lower()
    if ext not in FORMATS:
        raise CLIError(f"{path}: unknown data format {ext or '(no suffix)'!r}; "
                       f"use one of {', '.join(FORMATS)}")
    return ext


def _load_array(path: str) -> np.ndarray:
    """Load a ``.npy`` file without pickles, as a numeric array."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise CLIError(f"{path} is not a readable .npy file: {exc}") from None
    if not isinstance(arr, np.ndarray):
        raise CLIError(f"{path} holds several arrays (.npz); expected one .npy array")
    return _numeric(arr, path)


def _numeric(arr: np.ndarray, what: str) -> np.ndarray:
    if arr.dtype.kind not in "biuf":
        raise CLIError(f"{what}: expected numbers; got an array of dtype {arr.dtype}")
    return arr


def _read_csv(path: str) -> tuple[list[str], np.ndarray]:
    """A CSV with a header row: ``(column names, float64 table)``."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    rows = [r for r in rows if r and any(cell.strip() for cell in r)]  # skip blank lines
    if not rows:
        raise CLIError(f"{path} is empty; expected a header row and data rows")
    header, body = [h.strip() for h in rows[0]], rows[1:]
    if not body:
        raise CLIError(f"{path} has a header row but no data rows")
    table = np.empty((len(body), len(header)))
    for i, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise CLIError(f"{path}, line {i}: {len(row)} fields; the header has {len(header)}")
        for j, cell in enumerate(row):
            try:
                table[i - 2, j] = float(cell)
            except ValueError:
                raise CLIError(f"{path}, line {i}, column {header[j]!r}: {cell!r} is not a "
                               "number (encode class labels as integers 0..K-1)") from None
    return header, table


def _column_index(target: str, names: list[str], path: str) -> int:
    """``target`` as a column name, else as an index (negative counts from the end)."""
    if target in names:
        return names.index(target)
    try:
        index = int(target)
    except ValueError:
        raise CLIError(f"{path} has no column {target!r}; its columns are "
                       f"{', '.join(names)}") from None
    if not -len(names) <= index < len(names):
        raise CLIError(f"{path}: column index {index} is out of range for {len(names)} "
                       "columns")
    return index % len(names)


def load_data(path: str, target: str | None = None, target_file: str | None = None,
              need_target: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Read features ``X`` and targets ``y`` (None when there are none and none are needed).

    Parameters
    ----------
    path : str
        ``.npz`` with arrays ``X`` and ``y`` (``--target`` names another array for ``y``);
        ``.npy`` holding ``X`` (2-D); or ``.csv`` with a header row.
    target : str, optional
        For ``.csv`` and ``.npy``: the target column (a name, or an index), removed from ``X``.
    target_file : str, optional
        A ``.npy`` or ``.csv`` file holding ``y`` (one value, or one row, per sample).
    need_target : bool
        Whether a missing target is an error (train) or just absent (predict).
    """
    if target is not None and target_file is not None:
        raise CLIError("give either --target or --target-file, not both")
    ext = _check_file(path)
    y = None
    if ext == ".npz":
        X, y = _load_npz(path, target)
    else:
        if ext == ".npy":
            X = _load_array(path)
            if X.ndim != 2:
                raise CLIError(f"{path}: expected a 2-D array (samples x features); got shape "
                               f"{X.shape}")
            names = [str(i) for i in range(X.shape[1])]
        else:
            names, X = _read_csv(path)
        if target is not None:
            j = _column_index(target, names, path)
            y, X = X[:, j], np.delete(X, j, axis=1)
            if X.shape[1] == 0:
                raise CLIError(f"{path}: no feature columns are left besides the target")
    if target_file is not None:
        y = _load_targets(target_file)
    if y is None and need_target:
        raise CLIError(f"{path}: no targets; use --target COLUMN or --target-file FILE"
                       if ext != ".npz" else f"{path} has no array 'y'")
    if y is not None and len(y) != len(X):
        raise CLIError(f"{len(X)} samples in {path} but {len(y)} targets")
    return X, y


def _load_npz(path: str, target: str | None) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        with np.load(path, allow_pickle=False) as files:
            names = list(files.files)
            if "X" not in names:
                raise CLIError(f"{path} has no array 'X' (it has {', '.join(names) or 'none'})")
            X = _numeric(files["X"], f"{path}: X")
            key = target if target is not None else "y"
            if target is not None and key not in names:
                raise CLIError(f"{path} has no array {key!r} (it has {', '.join(names)})")
            y = _numeric(files[key], f"{path}: {key}") if key in names else None
    except (OSError, ValueError, EOFError) as exc:
        raise CLIError(f"{path} is not a readable .npz file: {exc}") from None
    if X.ndim != 2:
        raise CLIError(f"{path}: X must be 2-D (samples x features); got shape {X.shape}")
    return X, y


def _load_targets(path: str) -> np.ndarray:
    ext = _check_file(path)
    if ext == ".npy":
        y = _load_array(path)
    elif ext == ".csv":
        y = _read_csv(path)[1]
        y = y[:, 0] if y.shape[1] == 1 else y
    else:
        raise CLIError(f"{path}: a target file must be .npy or .csv")
    if y.ndim not in (1, 2):
        raise CLIError(f"{path}: targets must be 1-D or 2-D; got shape {y.shape}")
    return y
