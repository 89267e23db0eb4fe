"""Saving and loading networks as ``.npz`` files: plain arrays plus JSON metadata, no pickle.

A file holds ``W0 … W{L-1}``, ``b0 … b{L-1}`` (when the network has biases) and ``metadata``,
a 0-d string array with a JSON object::

    {"format": "deltaprop", "format_version": 1, "sizes": [...], "activations": [...],
     "loss": ..., "alpha": ..., "bias": ..., "dtype": ..., "seed": ..., "backend": ...}

Loading never unpickles (``allow_pickle=False``), so a file from an untrusted source cannot run
code; anything that is not exactly this format is refused with a ``ValueError``.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
import zlib
from typing import Any, Union

import numpy as np

from .backends import BACKENDS, get_backend
from .mlp import MLP

FORMAT = "deltaprop"
FORMAT_VERSION = 1

PathLike = Union[str, "os.PathLike[str]"]

# What reading a damaged archive member can raise, besides NumPy's own ValueError.
_READ_ERRORS = (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error)

_FIELDS = {"format": str, "format_version": int, "sizes": list, "activations": list,
           "loss": str, "alpha": (int, float), "bias": bool, "dtype": str, "seed": int,
           "backend": str}


def save(net: MLP, path: PathLike) -> None:
    """Write ``net``'s architecture and weights to ``path`` (exactly that name; no suffix added).

    The file is written to a temporary file in the same directory and then renamed over
    ``path``, so a crash never leaves a half-written model where a good one was.
    """
    if not isinstance(net, MLP):
        raise TypeError(f"net must be a deltaprop.MLP; got {type(net).__name__}")
    path = os.fspath(path)
    spec = net.spec
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "sizes": list(spec.sizes),
            "activations": list(spec.activations), "loss": spec.loss, "alpha": spec.alpha,
            "bias": spec.bias, "dtype": spec.dtype.name, "seed": net.seed,
            "backend": net.backend}
    W, b = net.get_weights()
    arrays = {f"W{i}": w for i, w in enumerate(W)}
    arrays.update({f"b{i}": v for i, v in enumerate(b or [])})
    arrays["metadata"] = np.array(json.dumps(meta))
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _member(files: Any, name: str, path: str) -> np.ndarray:
    try:
        return files[name]
    except _READ_ERRORS as exc:  # truncated, corrupt, or a pickled object array
        raise ValueError(f"{path}: cannot read {name!r}: {exc}") from None


def _read_metadata(files: Any, path: str) -> dict[str, Any]:
    if "metadata" not in files:
        raise ValueError(f"{path} is not a deltaprop model: it has no 'metadata' entry")
    raw = _member(files, "metadata", path)
    if raw.shape != () or raw.dtype.kind != "U":
        raise ValueError(f"{path}: 'metadata' must be a JSON string; got a {raw.dtype} array "
                         f"of shape {raw.shape}")
    try:
        meta = json.loads(str(raw))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: 'metadata' is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a deltaprop model (metadata format is "
                         f"{meta.get('format') if isinstance(meta, dict) else meta!r})")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(f"{path} has format_version {version!r}; this deltaprop reads version "
                         f"{FORMAT_VERSION}")
    for key, kind in _FIELDS.items():
        if key not in meta:
            raise ValueError(f"{path}: metadata lacks {key!r}")
        value = meta[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ValueError(f"{path}: metadata {key!r} has the wrong type: {value!r}")
    return meta


def load(path: PathLike, backend: str | None = None) -> MLP:
    """Read a network written by :func:`save`.

    Parameters
    ----------
    path : str or os.PathLike
    backend : {"native", "reference"}, optional
        Where to put the network; by default the backend it was saved from.

    Raises
    ------
    ValueError
        For a file that is truncated, corrupt, not a deltaprop model, of another format version,
        or whose arrays do not match its metadata.
    """
    path = os.fspath(path)
    if backend is not None:
        get_backend(backend)  # an unknown name is the caller's error, not the file's
    # Our own handle, closed on every path: np.load leaks the one it opens when it fails.
    with open(path, "rb") as handle:
        try:
            files = np.load(handle, allow_pickle=False)
        except _READ_ERRORS as exc:
            raise ValueError(f"{path} is not a readable .npz file: {exc}") from None
        if not isinstance(files, np.lib.npyio.NpzFile):
            raise ValueError(f"{path} holds a single .npy array, not a deltaprop model (.npz)")
        with files:
            return _build(files, path, backend)


def _build(files: Any, path: str, backend: str | None) -> MLP:
    meta = _read_metadata(files, path)
    if backend is None:
        backend = meta["backend"]
        if backend not in BACKENDS:
            raise ValueError(f"{path}: unknown backend {backend!r} in metadata")
    acts = meta["activations"]
    try:
        net = MLP(meta["sizes"], activation=acts[:-1], loss=meta["loss"],
                  output_activation=acts[-1] if acts else None, bias=meta["bias"],
                  dtype=meta["dtype"], backend=backend, seed=meta["seed"], alpha=meta["alpha"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: metadata describes no valid network: {exc}") from None
    if list(net.spec.activations) != acts:
        raise ValueError(f"{path}: metadata lists {len(acts)} activations for "
                         f"{net.n_layers} layers")
    L = net.n_layers
    expected = {"metadata"} | {f"W{i}" for i in range(L)}
    if net.spec.bias:
        expected |= {f"b{i}" for i in range(L)}
    names = set(files.files)
    if names != expected:
        missing, extra = sorted(expected - names), sorted(names - expected)
        raise ValueError(f"{path}: arrays do not match the metadata (missing {missing}, "
                         f"unexpected {extra})")
    dtype = net.dtype
    arrays = {}
    for name in sorted(expected - {"metadata"}):
        arr = _member(files, name, path)
        if arr.dtype != dtype:
            raise ValueError(f"{path}: {name} has dtype {arr.dtype}; metadata says {dtype}")
        arrays[name] = arr
    W = [arrays[f"W{i}"] for i in range(L)]
    b = [arrays[f"b{i}"] for i in range(L)] if net.spec.bias else None
    try:
        net.set_weights(W, b)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    return net
