"""Saving and loading networks as ``.npz`` files: plain arrays plus JSON metadata, no pickle.

A file holds ``W0 … W{L-1}``, ``b0 … b{L-1}`` (when the network has biases), optionally the
optimizer's moments (``m_weights0 …``, ``v_biases0 …``), and ``metadata``, a 0-d string array
holding a JSON object::

    {"format": "deltaprop", "format_version": 2, "sizes": [...], "activations": [...],
     "loss": ..., "alpha": ..., "bias": ..., "dtype": ..., "seed": ..., "backend": ...,
     "epochs_seen": ..., "optimizer": null | {"kind": "sgd" | "adam", "params": {...},
                                               "step": ..., "moments": ["m_weights", ...]}}

``docs/model-format.md`` documents every field. Loading never unpickles
(``allow_pickle=False``), so a file from an untrusted source cannot run code; anything that is
not exactly this format is refused with a ``ValueError`` that names the file and the problem.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
import zipfile
import zlib
from typing import Any, Union

import numpy as np

from .backends import BACKENDS, get_backend
from .mlp import MLP
from .optim import SGD, Adam, Optimizer

FORMAT = "deltaprop"
FORMAT_VERSION = 2
# Version 1 (deltaprop 0.1 development builds) lacks epochs_seen and optimizer; still readable.
READABLE_VERSIONS = (1, 2)

PathLike = Union[str, "os.PathLike[str]"]

# What reading a damaged archive member can raise, besides NumPy's own ValueError. zipfile
# raises NotImplementedError for a member needing a newer zip version or another compression,
# and RuntimeError for an encrypted one.
_READ_ERRORS = (OSError, EOFError, ValueError, NotImplementedError, RuntimeError,
                zipfile.BadZipFile, zlib.error)

_FIELDS = {"format": str, "format_version": int, "sizes": list, "activations": list,
           "loss": str, "alpha": (int, float), "bias": bool, "dtype": str, "seed": int,
           "backend": str}
_FIELDS_V2 = {"epochs_seen": int, "optimizer": (dict, type(None))}

_OPTIMIZERS = {"sgd": SGD, "adam": Adam}
# The backends' optimizer-state lists: SGD momentum uses m_*, Adam m_* and v_*.
_MOMENTS = ("m_weights", "m_biases", "v_weights", "v_biases")


def save(net: MLP, path: PathLike, optimizer: Optimizer | None = None) -> None:
    """Write ``net``'s architecture and weights to ``path`` (exactly that name; no suffix added).

    The file is written to a temporary file in the same directory and then renamed over
    ``path`` (:func:`os.replace`, atomic on POSIX and Windows), so a crash never leaves a
    half-written model where a good one was.

    Parameters
    ----------
    net : MLP
    path : str or os.PathLike
    optimizer : SGD or Adam, optional
        Also store this optimizer's hyper-parameters and its state in ``net`` (step count,
        momentum or Adam moments), so that ``load(path, with_optimizer=True)`` resumes training
        exactly where it stopped: ``fit`` for 2 + 3 epochs across a save and a load gives
        bitwise the weights of ``fit`` for 5. It must be the optimizer ``net`` last trained
        with, or one it has not trained with yet if ``net`` was never trained.
    """
    if not isinstance(net, MLP):
        raise TypeError(f"net must be a deltaprop.MLP; got {type(net).__name__}")
    path = os.fspath(path)
    spec = net.spec
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "sizes": list(spec.sizes),
            "activations": list(spec.activations), "loss": spec.loss, "alpha": spec.alpha,
            "bias": spec.bias, "dtype": spec.dtype.name, "seed": net.seed,
            "backend": net.backend, "epochs_seen": net._epochs_seen, "optimizer": None}
    W, b = net.get_weights()
    arrays = {f"W{i}": w for i, w in enumerate(W)}
    arrays.update({f"b{i}": v for i, v in enumerate(b or [])})
    if optimizer is not None:
        meta["optimizer"] = _optimizer_entry(net, optimizer, arrays)
    arrays["metadata"] = np.array(json.dumps(meta))
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())  # the data is on disk before the rename makes it the model
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _optimizer_entry(net: MLP, optimizer: Any, arrays: dict[str, np.ndarray]) -> dict:
    """The optimizer's metadata; its moment arrays are added to ``arrays``."""
    if not isinstance(optimizer, (SGD, Adam)):
        raise TypeError("optimizer must be a deltaprop.SGD or deltaprop.Adam; got "
                        f"{type(optimizer).__name__}")
    if net._optimizer is None:
        # Never trained: the state fit would start this optimizer from is the empty one.
        state: dict[str, Any] = {"step": 0, **{k: [] for k in _MOMENTS}}
    elif optimizer is net._optimizer:
        state = net._net.optimizer_state()
    else:
        # The network's moments belong to another object; saving them under this one's
        # hyper-parameters would resume a run that never happened.
        raise ValueError("optimizer is not the one this network last trained with, so the "
                         "network holds no state for it; pass that optimizer (or none)")
    moments = [k for k in _MOMENTS if state[k]]
    for k in moments:
        arrays.update({f"{k}{i}": a for i, a in enumerate(state[k])})
    return {"kind": optimizer.kind, "params": dataclasses.asdict(optimizer),
            "step": int(state["step"]), "moments": moments}


def load(path: PathLike, backend: str | None = None,
         with_optimizer: bool = False) -> MLP | tuple[MLP, Optimizer | None]:
    """Read a network written by :func:`save`.

    Parameters
    ----------
    path : str or os.PathLike
    backend : {"native", "reference"}, optional
        Where to put the network; by default the backend it was saved from.
    with_optimizer : bool
        Return ``(net, optimizer)``: the optimizer saved with the network (None if there is
        none), already attached to ``net`` with its state, so ``net.fit(..., optimizer=opt)``
        continues the saved run bit for bit.

    Returns
    -------
    MLP, or (MLP, SGD or Adam or None) with ``with_optimizer=True``

    Raises
    ------
    ValueError
        For a file that is truncated, corrupt, not a deltaprop model, of another format version,
        or whose arrays do not match its metadata.
    FileNotFoundError
        When ``path`` does not exist.
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
            net, optimizer = _build(files, path, backend)
    return (net, optimizer) if with_optimizer else net


def _member(files: Any, name: str, path: str) -> np.ndarray:
    try:
        return files[name]
    except _READ_ERRORS as exc:  # truncated, corrupt, or a pickled object array
        raise ValueError(f"{path}: cannot read {name!r}: {exc}") from None


def _check_fields(meta: dict, fields: dict, path: str, where: str = "metadata") -> None:
    for key, kind in fields.items():
        if key not in meta:
            raise ValueError(f"{path}: {where} lacks {key!r}")
        value = meta[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ValueError(f"{path}: {where} {key!r} has the wrong type: {value!r}")


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
    if version not in READABLE_VERSIONS or isinstance(version, bool):
        raise ValueError(f"{path} has format_version {version!r}; this deltaprop reads versions "
                         f"{', '.join(map(str, READABLE_VERSIONS))}")
    _check_fields(meta, _FIELDS, path)
    if version == 1:
        meta = {**meta, "epochs_seen": 0, "optimizer": None}
    _check_fields(meta, _FIELDS_V2, path)
    if meta["epochs_seen"] < 0:
        raise ValueError(f"{path}: metadata 'epochs_seen' is negative: {meta['epochs_seen']}")
    return meta


def _build(files: Any, path: str, backend: str | None) -> tuple[MLP, Optimizer | None]:
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
    opt_meta = meta["optimizer"]
    optimizer, moments = ((None, []) if opt_meta is None
                          else _read_optimizer(opt_meta, net.spec.bias, path))
    for k in moments:
        if k.endswith("weights") or net.spec.bias:
            expected |= {f"{k}{i}" for i in range(L)}
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
    net._epochs_seen = meta["epochs_seen"]
    if optimizer is not None:
        _restore_state(net, optimizer, opt_meta["step"], moments, arrays, path)
    return net, optimizer


def _read_optimizer(entry: dict, bias: bool, path: str) -> tuple[Optimizer, list[str]]:
    where = "optimizer metadata"
    _check_fields(entry, {"kind": str, "params": dict, "step": int, "moments": list}, path,
                  where)
    cls = _OPTIMIZERS.get(entry["kind"])
    if cls is None:
        raise ValueError(f"{path}: unknown optimizer kind {entry['kind']!r}")
    try:
        optimizer = cls(**entry["params"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {where} holds invalid parameters: {exc}") from None
    if not 0 <= entry["step"] < 2**63:
        raise ValueError(f"{path}: {where} 'step' is out of range: {entry['step']}")
    moments = entry["moments"]
    # Adam keeps m and v, momentum SGD only m (biases' too when there are biases); a fresh
    # optimizer, or plain SGD, has none. A partial set would be a state no run produces.
    full = [k for k in _MOMENTS if (optimizer.kind == "adam" or k.startswith("m_"))
            and (bias or k.endswith("weights"))]
    if moments not in ([], full):
        raise ValueError(f"{path}: {where} lists moments {moments!r}; a {optimizer.kind} "
                         f"optimizer keeps none or {full}")
    return optimizer, moments


def _restore_state(net: MLP, optimizer: Optimizer, step: int, moments: list[str],
                   arrays: dict[str, np.ndarray], path: str) -> None:
    L, bias = net.n_layers, net.spec.bias
    W, b = net.get_weights()
    state: dict[str, Any] = {"step": step, **{k: [] for k in _MOMENTS}}
    for k in moments:
        params = W if k.endswith("weights") else (b or [])
        state[k] = [arrays[f"{k}{i}"] for i in range(L if k.endswith("weights") or bias else 0)]
        for i, (a, p) in enumerate(zip(state[k], params)):
            if a.shape != p.shape:
                raise ValueError(f"{path}: {k}{i} has shape {a.shape}; expected {p.shape}")
            if not np.isfinite(a).all():
                raise ValueError(f"{path}: {k}{i} holds values that are not finite")
            if k.startswith("v_") and (a < 0).any():  # second moments are squares
                raise ValueError(f"{path}: {k}{i} holds negative second moments")
    net._net.set_optimizer_state(state)
    net._optimizer = optimizer
