"""ONNX export: onnxruntime reproduces ``net.forward`` for every activation, loss and dtype."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import deltaprop as dp

onnx = pytest.importorskip("onnx", reason="ONNX export tests need onnx: pip install '.[onnx]'")
ort = pytest.importorskip("onnxruntime",
                          reason="ONNX export tests need onnxruntime: pip install '.[onnx]'")

from deltaprop import onnx as dp_onnx  # noqa: E402  (after the skips: it needs onnx)

HIDDEN = ["identity", "sigmoid", "tanh", "relu", "leaky_relu"]
# (loss, output activation): the loss's own output, and mse with each non-softmax output.
OUTPUTS = [("cross_entropy", None), ("binary_cross_entropy", None)] + [
    ("mse", act) for act in HIDDEN]


def run(path: Path, X: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"X": X})[0]


def trained_net(activation: str, loss: str, output: str | None, dtype: str,
                bias: bool = True, seed: int = 0) -> dp.MLP:
    rng = np.random.default_rng(seed)
    net = dp.MLP([5, 8, 6, 3], activation=activation, loss=loss, output_activation=output,
                 dtype=dtype, bias=bias, seed=seed, alpha=0.2)
    X = rng.normal(size=(32, 5))
    y = {"cross_entropy": rng.integers(0, 3, 32), "binary_cross_entropy": rng.random((32, 3)),
         "mse": rng.normal(size=(32, 3)) * 0.5}[loss]
    net.fit(X, y, epochs=2, batch_size=8, optimizer=dp.SGD(lr=0.05))  # biases become non-zero
    return net


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss,output", OUTPUTS)
@pytest.mark.parametrize("activation", HIDDEN)
def test_onnxruntime_matches_forward(activation: str, loss: str, output: str | None,
                                     dtype: str, tmp_path: Path) -> None:
    net = trained_net(activation, loss, output, dtype)
    path = tmp_path / "model.onnx"
    dp_onnx.export(net, path)
    X = np.random.default_rng(1).normal(size=(17, 5)).astype(dtype) * 3
    got = run(path, X)
    assert got.dtype == np.dtype(dtype) and got.shape == (17, 3)
    np.testing.assert_allclose(got, net.forward(X), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_without_biases_and_batch_one(dtype: str, tmp_path: Path) -> None:
    net = trained_net("relu", "cross_entropy", None, dtype, bias=False)
    model = dp_onnx.export(net, tmp_path / "m.onnx", opset=dp_onnx.MIN_OPSET)
    assert all(len(n.input) == 2 for n in model.graph.node if n.op_type == "Gemm")
    for rows in (1, 300):
        X = np.random.default_rng(rows).normal(size=(rows, 5)).astype(dtype)
        np.testing.assert_allclose(run(tmp_path / "m.onnx", X), net.forward(X), rtol=1e-5,
                                   atol=1e-5)


def test_graph_is_standard(tmp_path: Path) -> None:
    net = dp.MLP([4, 3, 2], activation="tanh", loss="cross_entropy")
    model = dp_onnx.export(net, tmp_path / "m.onnx")
    assert [n.op_type for n in model.graph.node] == ["Gemm", "Tanh", "Gemm", "Softmax"]
    assert [o.domain for o in model.opset_import] == [""]
    assert model.opset_import[0].version == dp_onnx.DEFAULT_OPSET
    assert model.producer_name == "deltaprop"
    onnx.checker.check_model(onnx.load(str(tmp_path / "m.onnx")), full_check=True)
    assert os.listdir(tmp_path) == ["m.onnx"]


def test_bad_arguments(tmp_path: Path) -> None:
    net = dp.MLP([2, 2])
    for opset in (12, 10_000, "17", True):
        with pytest.raises(ValueError, match="opset"):
            dp_onnx.export(net, tmp_path / "m.onnx", opset=opset)
    with pytest.raises(TypeError, match="MLP"):
        dp_onnx.export("net", tmp_path / "m.onnx")
    assert os.listdir(tmp_path) == []
