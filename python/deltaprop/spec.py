"""The names a network is built from, and their validation.

A :class:`NetSpec` is everything about a network except its numbers: layer sizes, the
activation of each layer, the loss, the leaky-ReLU slope, whether layers have biases and the
floating-point type. Both backends are constructed from one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HIDDEN_ACTIVATIONS = ("identity", "sigmoid", "tanh", "relu", "leaky_relu")
ACTIVATIONS = HIDDEN_ACTIVATIONS + ("softmax",)
LOSSES = ("mse", "cross_entropy", "binary_cross_entropy")
DTYPES = ("float32", "float64")

# The output activation each loss implies when the user names none, and the only one whose
# output delta the loss's fused formula (DESIGN §1) is valid for.
DEFAULT_OUTPUT_ACTIVATION = {
    "mse": "identity",
    "cross_entropy": "softmax",
    "binary_cross_entropy": "sigmoid",
}


def check_name(kind: str, name: object, valid: tuple[str, ...]) -> str:
    """Return ``name`` if it is one of ``valid``, else raise an error listing the valid ones."""
    if not isinstance(name, str):
        raise TypeError(f"{kind} must be a string, one of {list(valid)}; got {type(name).__name__}")
    if name not in valid:
        raise ValueError(f"unknown {kind} {name!r}; expected one of {list(valid)}")
    return name


def check_dtype(dtype: object) -> np.dtype:
    """Return the NumPy dtype for ``"float32"``/``"float64"`` (or the NumPy types themselves)."""
    try:
        resolved = np.dtype(dtype)  # type: ignore[call-overload]
    except TypeError:
        resolved = None
    if resolved is None or resolved.name not in DTYPES:
        raise ValueError(f"unsupported dtype {dtype!r}; expected one of {list(DTYPES)}")
    return resolved


@dataclass(frozen=True)
class NetSpec:
    """The architecture of a network: everything but its weights.

    ``activations[l]`` is the activation of layer ``l + 1`` (there are ``len(sizes) - 1`` of
    them); the last one is the output activation.
    """

    sizes: tuple[int, ...]
    activations: tuple[str, ...]
    loss: str
    alpha: float = 0.01
    bias: bool = True
    dtype: np.dtype = np.dtype("float64")

    @property
    def n_layers(self) -> int:
        return len(self.sizes) - 1

    @property
    def output_activation(self) -> str:
        return self.activations[-1]

    @classmethod
    def build(
        cls,
        sizes: object,
        activation: str | list[str] | tuple[str, ...] = "relu",
        loss: str = "mse",
        output_activation: str | None = None,
        alpha: float = 0.01,
        bias: bool = True,
        dtype: object = "float32",
    ) -> NetSpec:
        """Validate user-facing arguments and return the spec they describe."""
        try:
            sizes_t = tuple(sizes)  # type: ignore[call-overload]
        except TypeError:
            raise TypeError("sizes must be a sequence of ints; got "
                            f"{type(sizes).__name__}") from None
        if len(sizes_t) < 2:
            raise ValueError("sizes needs at least an input and an output size; got "
                             f"{list(sizes_t)}")
        for s in sizes_t:
            if isinstance(s, (bool, np.bool_)) or not isinstance(s, (int, np.integer)):
                raise TypeError(f"layer sizes must be ints; got {s!r} in {list(sizes_t)}")
            if s <= 0:
                raise ValueError(f"layer sizes must be positive; got {list(sizes_t)}")
        sizes_t = tuple(int(s) for s in sizes_t)
        check_name("loss", loss, LOSSES)
        n_hidden = len(sizes_t) - 2
        if isinstance(activation, str):
            hidden = (check_name("activation", activation, HIDDEN_ACTIVATIONS),) * n_hidden
        else:
            hidden = tuple(check_name("activation", a, HIDDEN_ACTIVATIONS) for a in activation)
            if len(hidden) != n_hidden:
                raise ValueError(
                    f"activation lists one name per hidden layer: expected {n_hidden}, "
                    f"got {len(hidden)}"
                )
        expected_out = DEFAULT_OUTPUT_ACTIVATION[loss]
        if output_activation is None:
            output_activation = expected_out
        check_name("output_activation", output_activation, ACTIVATIONS)
        if loss != "mse" and output_activation != expected_out:
            raise ValueError(
                f"loss {loss!r} needs output_activation {expected_out!r}; got {output_activation!r}"
            )
        if loss == "mse" and output_activation == "softmax":
            raise ValueError("softmax output needs loss 'cross_entropy'; mse supports "
                             f"{list(HIDDEN_ACTIVATIONS)}")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating)):
            raise TypeError(f"alpha must be a float; got {type(alpha).__name__}")
        # g' is read from the output: [a > 0] tells the branch only if alpha·z <= 0 for z < 0.
        if not (np.isfinite(alpha) and alpha >= 0):
            raise ValueError(f"alpha must be finite and >= 0; got {alpha}")
        return cls(sizes_t, hidden + (output_activation,), loss, float(alpha), bool(bias),
                   check_dtype(dtype))
