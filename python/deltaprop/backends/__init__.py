"""Backends: the same math behind one interface.

A backend is a module that provides

* ``Network(spec, weights, biases)`` – a network that owns its parameters and optimizer state
  (interface below), and
* the per-layer loops ``forward_layer``, ``output_delta``, ``delta`` and ``update`` used by
  :mod:`deltaprop.ops`.

``reference`` is plain NumPy, written for a reader: the executable specification.
``native`` drives the C++ kernels of ``deltaprop._native``. Callers (``MLP``, ``ops``) validate
and convert every argument first: a backend receives C-contiguous arrays of ``spec.dtype`` with
the right shapes, dense targets ``T`` of shape ``(B, n_L)``, and optimizer objects from
:mod:`deltaprop.optim`.

Network interface (both backends)::

    net = Network(spec, weights, biases)      # copies in; biases is None when not spec.bias
    net.get_weights() -> (list[W], list[b] | None)            # copies
    net.set_weights(weights, biases) -> None                  # copies in
    net.forward(X) -> A_L                                     # (B, n_L)
    net.loss(X, T) -> float                                   # mean over the batch
    net.gradients(X, T) -> (list[dW], list[db] | None)
    net.train_step(X, T, optimizer) -> float                  # loss before the update
    net.fit_epoch(X, T, optimizer, batch_size, shuffle, seed, epoch, progress=None,
                  x_largest=None) -> float
        # one pass over the rows in the order shuffle.epoch_order(n, seed, epoch) (or 0..n-1
        # when shuffle is False), in consecutive batches of batch_size rows (the last one may
        # be smaller), one train_step each; returns the mean per-sample loss, each batch's loss
        # measured before its update; x_largest: max |X| from the caller's finiteness check
        # of this X, which spares the native backend its own scan of X every epoch
    net.n_parameters -> int                   # weights and biases: a flat gradient's length
    net.gradients_into(X, T, out) -> float    # mean loss over the rows; writes the gradients
        # of that mean loss into the flat 1-D buffer out (n_parameters elements, spec.dtype),
        # laid out W_1, b_1, W_2, b_2, ... (W_l row-major; no b_l without biases)
    net.apply_gradients(flat, optimizer) -> bool
        # one optimizer step (state, momentum, Adam moments, weight decay on weights only) from
        # a flat gradient in that layout: train_step == gradients_into + apply_gradients, up to
        # rounding. Data-parallel training (deltaprop.distributed) sums the flat buffers.
        # False: the step would have left a parameter or moment non-finite and was undone.
    net.optimizer_state() -> dict                             # copies, see below
    net.set_optimizer_state(state) -> None
    net.reset_optimizer() -> None                             # zero moments, step 0

Optimizer state: ``{"step": int, "m_weights": [...], "m_biases": [...], "v_weights": [...],
"v_biases": [...]}``; ``m`` is SGD's velocity or Adam's first moment, ``v`` Adam's second
moment; lists are empty when unused (no momentum, plain SGD, or no biases).
"""

from __future__ import annotations

from types import ModuleType

BACKENDS = ("native", "reference")


def get_backend(name: str) -> ModuleType:
    """Return the backend module called ``name`` (``"native"`` or ``"reference"``)."""
    if name == "reference":
        from . import reference

        return reference
    if name == "native":
        from . import native

        return native
    if not isinstance(name, str):
        raise TypeError(f"backend must be a string, one of {list(BACKENDS)}; got {name!r}")
    raise ValueError(f"unknown backend {name!r}; expected one of {list(BACKENDS)}")
