"""A plain NumPy/OpenBLAS training loop, written as a careful user would write it.

Everything is float32 and preallocated once per batch size: the batch is gathered with
``take(..., out=)``, every product is ``np.matmul(..., out=)``, activations, deltas and the SGD /
Adam updates run in place. It is the baseline deltaprop has to beat without its own GEMM: the
same BLAS that NumPy users already have, with no allocation per step.
"""

from __future__ import annotations

import numpy as np


class NumpyMLP:
    def __init__(self, sizes, hidden: str, output: str, loss: str, optimizer: str, lr: float,
                 seed: int = 0):
        rng = np.random.default_rng(seed)
        f32 = np.float32
        self.sizes, self.hidden, self.output, self.loss = sizes, hidden, output, loss
        self.W = [(rng.standard_normal((a, b)) * np.sqrt(2.0 / a)).astype(f32)
                  for a, b in zip(sizes[:-1], sizes[1:])]
        self.b = [np.zeros(b, f32) for b in sizes[1:]]
        self.gW = [np.empty_like(W) for W in self.W]
        self.gb = [np.empty_like(b) for b in self.b]
        self.adam = optimizer == "adam"
        self.lr, self.beta1, self.beta2, self.eps, self.t = lr, 0.9, 0.999, 1e-8, 0
        if self.adam:
            self.m = [np.zeros_like(p) for p in self.W + self.b]
            self.v = [np.zeros_like(p) for p in self.W + self.b]
            self.s = [np.empty_like(p) for p in self.W + self.b]  # scratch for the update
        self.B = 0

    def _alloc(self, B: int) -> None:
        # One set of buffers per batch size, as the native backend keeps one workspace.
        self.B = B
        self.A = [np.empty((B, n), np.float32) for n in self.sizes]
        self.D = [np.empty((B, n), np.float32) for n in self.sizes]
        self.S = [np.empty((B, n), np.float32) for n in self.sizes]  # derivative scratch
        self.Tb = np.empty((B, self.sizes[-1]), np.float32)
        self.mx = np.empty((B, 1), np.float32)

    @staticmethod
    def _activate(a: np.ndarray, kind: str, scratch: np.ndarray) -> None:
        if kind == "relu":
            np.maximum(a, 0, out=a)
        elif kind == "tanh":
            np.tanh(a, out=a)
        elif kind == "sigmoid":
            np.negative(a, out=a)
            np.exp(a, out=a)  # may overflow to inf for very negative z: 1/(1+inf) = 0 is right
            a += 1
            np.reciprocal(a, out=a)
        else:
            raise ValueError(kind)

    @staticmethod
    def _times_derivative(d: np.ndarray, a: np.ndarray, kind: str, s: np.ndarray) -> None:
        # g' from the layer's output a, as in DESIGN §1
        if kind == "relu":
            np.greater(a, 0, out=s)
        elif kind == "tanh":
            np.multiply(a, a, out=s)
            np.subtract(1, s, out=s)
        else:  # sigmoid
            np.subtract(1, a, out=s)
            s *= a
        d *= s

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The output layer's activations (softmax probabilities) of X's rows, in place in
        each product's output."""
        a, L = X, len(self.W)
        for i in range(L):
            a = a @ self.W[i]
            a += self.b[i]
            if i < L - 1:
                self._activate(a, self.hidden, a)
        if self.output == "softmax":
            a -= a.max(axis=1, keepdims=True)
            np.exp(a, out=a)
            a /= a.sum(axis=1, keepdims=True)
        else:
            self._activate(a, self.output, a)
        return a

    def step(self, X: np.ndarray, T: np.ndarray, idx: np.ndarray) -> None:
        B = len(idx)
        if B != self.B:
            self._alloc(B)
        A, D, S, L = self.A, self.D, self.S, len(self.W)
        X.take(idx, axis=0, out=A[0])
        T.take(idx, axis=0, out=self.Tb)
        for i in range(L):
            np.matmul(A[i], self.W[i], out=A[i + 1])
            A[i + 1] += self.b[i]
            if i < L - 1:
                self._activate(A[i + 1], self.hidden, S[i + 1])
        out = A[L]
        if self.output == "softmax":
            np.max(out, axis=1, keepdims=True, out=self.mx)
            out -= self.mx
            np.exp(out, out=out)
            np.sum(out, axis=1, keepdims=True, out=self.mx)
            out /= self.mx
            np.subtract(out, self.Tb, out=D[L])
        else:
            self._activate(out, self.output, S[L])
            np.subtract(out, self.Tb, out=D[L])
            self._times_derivative(D[L], out, self.output, S[L])
        D[L] *= np.float32(1.0 / B)
        for i in range(L - 1, -1, -1):
            np.matmul(A[i].T, D[i + 1], out=self.gW[i])
            np.sum(D[i + 1], axis=0, out=self.gb[i])
            if i > 0:  # the delta uses the old W_l, so it comes before the update
                np.matmul(D[i + 1], self.W[i].T, out=D[i])
                self._times_derivative(D[i], A[i], self.hidden, S[i])
        self._update()

    def _update(self) -> None:
        params, grads = self.W + self.b, self.gW + self.gb
        if not self.adam:
            for p, g in zip(params, grads):
                g *= np.float32(self.lr)
                p -= g
            return
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        # textbook bias correction, as torch.optim.Adam and deltaprop: lr·m̂ / (√v̂ + eps)
        step, v_scale = self.lr / (1 - b1 ** self.t), 1 / (1 - b2 ** self.t)
        for p, g, m, v, s in zip(params, grads, self.m, self.v, self.s):
            m *= np.float32(b1)
            np.multiply(g, np.float32(1 - b1), out=s)
            m += s
            v *= np.float32(b2)
            np.multiply(g, g, out=s)
            s *= np.float32(1 - b2)
            v += s
            np.multiply(v, np.float32(v_scale), out=s)
            np.sqrt(s, out=s)
            s += np.float32(self.eps)
            np.divide(m, s, out=s)
            s *= np.float32(step)
            p -= s

    def fit_epoch(self, X: np.ndarray, T: np.ndarray, batch: int, rng: np.random.Generator):
        order = rng.permutation(len(X))
        for start in range(0, len(X), batch):
            self.step(X, T, order[start:start + batch])
