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
    original = arrays["metadata"]
    meta = json.loads(str(original))
    change(arrays, meta)
    if arrays.get("metadata") is original:  # a change may replace the entry itself
        arrays["metadata"] = np.array(json.dumps(meta))
    with open(path, "wb") as f:
        np.savez(f, **arrays)


CORRUPTIONS = {
    "no metadata": (lambda a, m: a.pop("metadata"), "no 'metadata'"),
    "foreign format": (lambda a, m: m.update(format="keras"), "not a deltaprop model"),
    "newer version": (lambda a, m: m.update(format_version=3), "format_version 3"),
    "bool version": (lambda a, m: m.update(format_version=True), "format_version True"),
    "negative epochs": (lambda a, m: m.update(epochs_seen=-1), "'epochs_seen' is negative"),
    "truncated json": (lambda a, m: a.update(metadata=np.array('{"format": "delta')),
                       "not valid JSON"),
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


# Central-directory fields: version needed to extract, compression method, flags (bit 0:
# encrypted).
@pytest.mark.parametrize("field, value", [(6, 66), (10, 66), (8, 1)])
def test_members_zipfile_cannot_extract_are_value_errors(field: int, value: int,
                                                         tmp_path: Path) -> None:
    # Found by tests/test_fuzz.py: zipfile raises NotImplementedError for a member that needs
    # a newer zip version or an unknown compression, and it escaped dp.load; found by fuzzing
    # too, RuntimeError for an encrypted member.
    path = tmp_path / "model.npz"
    dp.save(trained("reference"), path)
    data = bytearray(path.read_bytes())
    header = data.index(b"PK\x01\x02")  # the first central-directory entry
    data[header + field:header + field + 2] = value.to_bytes(2, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="cannot read|not a readable"):
        dp.load(path)


def test_save_checks_its_argument(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="MLP"):
        io.save({"W": 1}, tmp_path / "x.npz")


# -- resuming training ------------------------------------------------------------------------

OPTIMIZERS = {"sgd": lambda: dp.SGD(lr=0.05), "momentum": lambda: dp.SGD(lr=0.05, momentum=0.9),
              "nesterov": lambda: dp.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
              "adam": lambda: dp.Adam(lr=0.01, weight_decay=1e-4)}


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("opt", list(OPTIMIZERS))
def test_resuming_equals_not_stopping(backend: str, opt: str, bias: bool,
                                      tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(40, 4)), rng.integers(0, 3, 40)

    def fresh() -> dp.MLP:
        return dp.MLP([4, 7, 3], activation="tanh", backend=backend, bias=bias, seed=5)

    straight, optimizer = fresh(), OPTIMIZERS[opt]()
    straight.fit(X, y, epochs=5, batch_size=16, optimizer=optimizer)

    first, optimizer = fresh(), OPTIMIZERS[opt]()
    first.fit(X, y, epochs=2, batch_size=16, optimizer=optimizer)
    dp.save(first, tmp_path / "run.npz", optimizer=optimizer)
    resumed, restored = dp.load(tmp_path / "run.npz", with_optimizer=True)
    assert restored == optimizer and restored is not optimizer
    resumed.fit(X, y, epochs=3, batch_size=16, optimizer=restored)
    for a, b in zip(params(resumed), params(straight)):
        assert a.tobytes() == b.tobytes()


def test_resume_on_the_other_backend(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    X, y = rng.normal(size=(30, 4)), rng.integers(0, 3, 30)
    net, opt = dp.MLP([4, 5, 3], dtype="float64", seed=1), dp.Adam(lr=0.01)
    net.fit(X, y, epochs=2, batch_size=10, optimizer=opt)
    dp.save(net, tmp_path / "m.npz", optimizer=opt)
    ref, ref_opt = dp.load(tmp_path / "m.npz", backend="reference", with_optimizer=True)
    net.fit(X, y, epochs=2, batch_size=10, optimizer=opt)
    ref.fit(X, y, epochs=2, batch_size=10, optimizer=ref_opt)
    for a, b in zip(params(ref), params(net)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_optimizer_argument_rules(tmp_path: Path) -> None:
    path = tmp_path / "m.npz"
    net = dp.MLP([2, 3, 2], backend="reference")
    dp.save(net, path, optimizer=dp.Adam())  # never trained: saved with an empty state
    loaded, opt = dp.load(path, with_optimizer=True)
    assert opt == dp.Adam() and loaded._net.optimizer_state()["step"] == 0
    dp.save(net, path)
    assert dp.load(path, with_optimizer=True)[1] is None
    net.train_step(np.ones((2, 2)), [0, 1], dp.SGD(momentum=0.5))
    with pytest.raises(ValueError, match="not the one this network last trained with"):
        dp.save(net, path, optimizer=dp.SGD(momentum=0.5))
    with pytest.raises(TypeError, match="SGD or deltaprop.Adam"):
        dp.save(net, path, optimizer="adam")


def adam_file(tmp_path: Path) -> Path:
    path = tmp_path / "m.npz"
    net, opt = trained("reference"), dp.Adam()
    net.train_step(np.ones((2, 4)), [0, 1], opt)
    dp.save(net, path, optimizer=opt)
    return path


OPTIMIZER_CORRUPTIONS = {
    "unknown kind": (lambda a, m: m["optimizer"].update(kind="rmsprop"), "unknown optimizer"),
    "bad params": (lambda a, m: m["optimizer"]["params"].update(lr=-1), "invalid parameters"),
    "extra param": (lambda a, m: m["optimizer"]["params"].update(rho=1), "invalid parameters"),
    "negative step": (lambda a, m: m["optimizer"].update(step=-2), "'step' is out of range"),
    "partial moments": (lambda a, m: m["optimizer"].update(moments=["m_weights"]),
                        "keeps none or"),
    "missing moment": (lambda a, m: a.pop("v_biases1"), r"missing \['v_biases1'\]"),
    "moment shape": (lambda a, m: a.update(m_weights0=a["m_weights0"].T.copy()),
                     "m_weights0 has shape"),
    "moment nan": (lambda a, m: a["m_biases0"].__setitem__(0, np.inf), "not finite"),
    "negative v": (lambda a, m: a["v_weights1"].__setitem__((0, 0), -1.0), "negative"),
    "optimizer not a dict": (lambda a, m: m.update(optimizer=[1]), "'optimizer' has the wrong"),
}


@pytest.mark.parametrize("case", list(OPTIMIZER_CORRUPTIONS))
def test_bad_optimizer_state_is_refused(case: str, tmp_path: Path) -> None:
    change, match = OPTIMIZER_CORRUPTIONS[case]
    path = adam_file(tmp_path)
    rewrite(path, change)
    with pytest.raises(ValueError, match=match):
        dp.load(path, with_optimizer=True)


def test_version_1_files_still_load(tmp_path: Path) -> None:
    path = tmp_path / "m.npz"
    net = trained("reference")
    dp.save(net, path)
    rewrite(path, lambda a, m: [m.pop("epochs_seen"), m.pop("optimizer"),
                                m.update(format_version=1)])
    old = dp.load(path)
    assert old._epochs_seen == 0
    for a, b in zip(params(old), params(net)):
        assert a.tobytes() == b.tobytes()


def test_interrupted_write_leaves_the_old_file(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash after part of the archive is written: the partial temp file is removed."""
    path = tmp_path / "model.npz"
    dp.save(trained("reference"), path)
    before = path.read_bytes()
    real_savez = np.savez

    def dies_halfway(f, **arrays: np.ndarray) -> None:
        real_savez(f, **arrays)
        f.truncate(f.tell() // 2)
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        dp.save(trained("reference", bias=False), path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["model.npz"]
    assert isinstance(dp.load(path), dp.MLP)
