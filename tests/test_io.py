"""save/load: bit-exact round trips, atomic writes, and clear errors for anything else."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import deltaprop as dp
from deltaprop import io


def trained(backend: str, dtype: str = "float32", bias: bool = True) -> dp.MLP:
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20, 4)), rng.integers(0, 3, 20)
    net = dp.MLP([4, 6, 5, 3], activation=["tanh", "leaky_relu"], backend=backend, dtype=dtype,
                 bias=bias, seed=7, alpha=0.2)
    net.fit(X, y, epochs=2, batch_size=8, optimizer=dp.SGD(lr=0.1))
    return net


def params(net: dp.MLP) -> list[np.ndarray]:
    W, b = net.get_weights()
    return W + (b or [])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("bias", [True, False])
def test_round_trip_is_bit_exact(backend: str, dtype: str, bias: bool, tmp_path: Path) -> None:
    net = trained(backend, dtype, bias)
    path = tmp_path / "model.npz"
    dp.save(net, path)
    loaded = dp.load(path)
    assert repr(loaded) == repr(net) and loaded.spec == net.spec
    for a, b in zip(params(loaded), params(net)):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    assert os.listdir(tmp_path) == ["model.npz"]  # no temporary file left behind


def test_load_onto_another_backend(tmp_path: Path) -> None:
    net = trained("native", "float64")
    dp.save(net, str(tmp_path / "m"))  # the name is used as given
    other = dp.load(tmp_path / "m", backend="reference")
    assert other.backend == "reference"
    X = np.random.default_rng(1).normal(size=(5, 4))
    np.testing.assert_allclose(other.forward(X), net.forward(X), rtol=1e-12)
    with pytest.raises(ValueError, match="unknown backend"):
        dp.load(tmp_path / "m", backend="gpu")


def test_a_failed_save_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "model.npz"
    dp.save(trained("reference"), path)
    before = path.read_bytes()

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        dp.save(dp.MLP([2, 2], backend="reference"), path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["model.npz"]


def rewrite(path: Path, change) -> None:
    """Rewrite a saved model with ``change(arrays, metadata)`` applied."""
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays["metadata"]))
    change(arrays, meta)
    if "metadata" in arrays:
        arrays["metadata"] = np.array(json.dumps(meta))
    with open(path, "wb") as f:
        np.savez(f, **arrays)


CORRUPTIONS = {
    "no metadata": (lambda a, m: a.pop("metadata"), "no 'metadata'"),
    "foreign format": (lambda a, m: m.update(format="keras"), "not a deltaprop model"),
    "newer version": (lambda a, m: m.update(format_version=2), "format_version 2"),
    "missing field": (lambda a, m: m.pop("loss"), "lacks 'loss'"),
    "wrong field type": (lambda a, m: m.update(bias="yes"), "'bias' has the wrong type"),
    "bad activation": (lambda a, m: m.update(activations=["tanh", "gelu", "softmax"]),
                       "no valid network"),
    "too few activations": (lambda a, m: m.update(activations=["softmax"]), "no valid network"),
    "missing array": (lambda a, m: a.pop("W1"), r"missing \['W1'\]"),
    "extra array": (lambda a, m: a.update(W9=np.ones(2)), r"unexpected \['W9'\]"),
    "wrong shape": (lambda a, m: a.update(W0=a["W0"].T.copy()), r"weights\[0\] must have"),
    "wrong dtype": (lambda a, m: a.update(W0=a["W0"].astype(np.float16)), "dtype float16"),
    "non-finite": (lambda a, m: a["b1"].__setitem__(0, np.nan), "finite"),
    "pickled array": (lambda a, m: a.update(W0=np.array([{"x": 1}], dtype=object)),
                      "cannot read 'W0'"),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_bad_files_are_value_errors(case: str, tmp_path: Path) -> None:
    change, match = CORRUPTIONS[case]
    path = tmp_path / "model.npz"
    dp.save(trained("reference"), path)
    rewrite(path, change)
    with pytest.raises(ValueError, match=match):
        dp.load(path)


def test_truncated_and_foreign_files(tmp_path: Path) -> None:
    path = tmp_path / "model.npz"
    dp.save(trained("reference"), path)
    data = path.read_bytes()
    for size in (0, 10, len(data) // 2, len(data) - 30):
        path.write_bytes(data[:size])
        with pytest.raises(ValueError):
            dp.load(path)
    path.write_bytes(b"definitely not a zip file" * 10)
    with pytest.raises(ValueError, match="not a readable"):
        dp.load(path)
    np.save(tmp_path / "array.npy", np.ones(3))
    with pytest.raises(ValueError, match="single .npy array"):
        dp.load(tmp_path / "array.npy")
    with pytest.raises(FileNotFoundError):
        dp.load(tmp_path / "missing.npz")


def test_save_checks_its_argument(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="MLP"):
        io.save({"W": 1}, tmp_path / "x.npz")
