"""Export a trained :class:`~deltaprop.MLP` to ONNX, so any ONNX runtime can serve it.

The graph is the forward pass of DESIGN §1 written with standard operators only: per layer one
``Gemm`` (``Z = A W + b``; ``W`` is stored as deltaprop holds it, ``(n_in, n_out)``, so no
transpose attribute is needed) followed by the layer's activation node — ``Relu``, ``Sigmoid``,
``Tanh``, ``LeakyRelu`` or ``Softmax(axis=1)``; ``identity`` layers get none. The input is
``X`` of shape ``(batch, n_0)`` with a symbolic batch dimension, the output ``Y`` holds the same
numbers as ``net.forward(X)``: class probabilities for ``cross_entropy`` and
``binary_cross_entropy`` networks, raw outputs for ``mse``.

float32 and float64 networks export in their own dtype (onnxruntime's CPU provider runs every
operator used here in both). ONNX stores ``LeakyRelu``'s ``alpha`` as a float32 attribute, so a
float64 network's slope is rounded to float32 precision there (a relative difference ~1e-8).

Needs the ``onnx`` package (``pip install "deltaprop[onnx]"``, which also brings onnxruntime).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Any, Union

import numpy as np

from .mlp import MLP

DEFAULT_OPSET = 17
# Gemm's optional bias (networks without biases) and Softmax over one axis need opset 13.
MIN_OPSET = 13

_ACTIVATION_OPS = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh",
                   "leaky_relu": "LeakyRelu", "softmax": "Softmax"}

PathLike = Union[str, "os.PathLike[str]"]


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ImportError("deltaprop.onnx.export needs the onnx package: "
                          'pip install "deltaprop[onnx]" (or pip install onnx)') from None
    return onnx


def to_model(net: MLP, opset: int = DEFAULT_OPSET) -> Any:
    """Build the ONNX graph of ``net``'s forward pass.

    Parameters
    ----------
    net : MLP
    opset : int
        The default-domain opset to target, from 13 to the newest the installed onnx knows.

    Returns
    -------
    onnx.ModelProto
        Checked with :func:`onnx.checker.check_model`.
    """
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper

    if not isinstance(net, MLP):
        raise TypeError(f"net must be a deltaprop.MLP; got {type(net).__name__}")
    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise ValueError(f"opset must be an int from {MIN_OPSET} to {newest}; got {opset!r}")
    spec = net.spec
    elem = TensorProto.DOUBLE if spec.dtype == np.float64 else TensorProto.FLOAT
    W, b = net.get_weights()
    nodes, initializers = [], []
    current = "X"
    for i, act in enumerate(spec.activations):
        initializers.append(numpy_helper.from_array(W[i], f"W{i}"))
        inputs = [current, f"W{i}"]
        if b is not None:
            initializers.append(numpy_helper.from_array(b[i], f"b{i}"))
            inputs.append(f"b{i}")
        last = i == len(spec.activations) - 1
        gemm_out = "Y" if last and act == "identity" else f"Z{i}"
        nodes.append(helper.make_node("Gemm", inputs, [gemm_out], name=f"gemm{i}"))
        current = gemm_out
        if act == "identity":
            continue
        attrs: dict[str, Any] = {}
        if act == "leaky_relu":
            attrs["alpha"] = float(spec.alpha)
        elif act == "softmax":
            attrs["axis"] = 1
        out = "Y" if last else f"A{i}"
        nodes.append(helper.make_node(_ACTIVATION_OPS[act], [current], [out], name=f"{act}{i}",
                                      **attrs))
        current = out
    graph = helper.make_graph(
        nodes, "deltaprop_mlp",
        [helper.make_tensor_value_info("X", elem, ["batch", spec.sizes[0]])],
        [helper.make_tensor_value_info("Y", elem, ["batch", spec.sizes[-1]])],
        initializers,
        doc_string=repr(net))
    opsets = [helper.make_opsetid("", opset)]
    from . import __version__

    # The oldest IR version that can express this opset, so older runtimes load the file too.
    model = helper.make_model(graph, opset_imports=opsets, producer_name="deltaprop",
                              producer_version=__version__,
                              ir_version=helper.find_min_ir_version_for(opsets))
    helper.set_model_props(model, {"loss": spec.loss,
                                   "activations": ",".join(spec.activations)})
    onnx.checker.check_model(model, full_check=True)
    return model


def export(net: MLP, path: PathLike, opset: int = DEFAULT_OPSET) -> Any:
    """Write ``net`` as an ONNX model to ``path``; returns the ``onnx.ModelProto``.

    Parameters
    ----------
    net : MLP
    path : str or os.PathLike
        Written atomically (a temporary file, then a rename), like :func:`deltaprop.save`.
    opset : int
        See :func:`to_model`.

    Examples
    --------
    >>> import deltaprop.onnx                                        # doctest: +SKIP
    >>> deltaprop.onnx.export(net, "model.onnx")                     # doctest: +SKIP
    >>> import onnxruntime as ort                                    # doctest: +SKIP
    >>> ort.InferenceSession("model.onnx").run(None, {"X": X})[0]   # == net.forward(X)
    """
    model = to_model(net, opset)
    path = os.fspath(path)
    data = model.SerializeToString()
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)),
                               prefix=os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return model
