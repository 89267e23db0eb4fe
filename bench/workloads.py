"""The benchmark workloads of issue 3: network shapes, training settings and their data.

Every workload is float32. Data are synthetic with a fixed seed (or scikit-learn's digits,
repeated), so every peer and every run trains on the same samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def products(sizes: tuple[int, ...]) -> int:
    """Σ n_{l-1}·n_l: multiply-adds of one sample's row through every layer's product."""
    return sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def training_flops(sizes: tuple[int, ...]) -> int:
    """FLOPs of one trained sample's products: forward A·W and gradient Aᵀ·D for every layer,
    delta D·Wᵀ from the second layer on, 2 FLOPs a multiply-add. No trainer computes the inputs'
    delta, which nothing uses: counted as 6·Σ, as it once was here, it made an MNIST-shaped step
    look 1.4× faster than it ran (its first layer is 85% of Σ), and its products alone through
    OpenBLAS "ran" at 116% of the sgemm peak."""
    return 2 * (2 * products(sizes) + products(sizes[1:]))


@dataclass(frozen=True)
class Workload:
    name: str
    sizes: tuple[int, ...]
    hidden: str  # activation of the hidden layers
    output: str  # activation of the output layer (softmax goes with cross_entropy)
    loss: str
    batch: int
    optimizer: str = "sgd"  # "sgd": SGD(lr=0.01); "adam": Adam(lr=1e-3)
    samples: int = 16384  # training-set size of the full run
    quick_samples: int = 4096
    data: str = "uniform"  # "uniform" synthetic, or "digits" (scikit-learn's, repeated)
    peers: tuple[str, ...] = field(default=("native", "native_epoch", "native_avx2", "reference",
                                            "torch", "sklearn", "numpy"))
    gemm_shapes: bool = True  # its forward products join the GEMM-alone table's training shapes
    inference: bool = False  # a unit predicts (predict_proba) its samples instead of training

    @property
    def lr(self) -> float:
        return 1e-3 if self.optimizer == "adam" else 0.01

    @property
    def flops_per_sample(self) -> int:
        """FLOPs per sample: to train, those of the products a step runs (training_flops); to
        predict, 2·Σ n_{l-1}·n_l (the forward GEMMs). Bias, activation and update work is not
        counted."""
        return 2 * products(self.sizes) if self.inference else training_flops(self.sizes)

    @property
    def label(self) -> str:
        shape = "-".join(map(str, self.sizes))
        if self.inference:
            return f"{self.name}: {shape} {self.hidden}/{self.output}, predict_proba"
        opt = "Adam" if self.optimizer == "adam" else "SGD"
        return (f"{self.name}: {shape} {self.hidden}/{self.output} {self.loss}, "
                f"batch {self.batch}, {opt} lr {self.lr:g}")


ONLINE_PEERS = ("native", "native_epoch", "native_in_order", "native_avx2", "reference", "torch",
                "numpy", "fann")

WORKLOADS = [
    Workload("seed-online", (2, 3, 1), "sigmoid", "sigmoid", "mse", 1, samples=200_000,
             quick_samples=50_000, peers=ONLINE_PEERS),
    Workload("online-64", (64, 128, 64, 10), "tanh", "sigmoid", "mse", 1, samples=20_000,
             quick_samples=5_000, peers=ONLINE_PEERS),
    Workload("digits", (64, 128, 64, 10), "relu", "softmax", "cross_entropy", 32,
             samples=1797 * 20, quick_samples=1797 * 4, data="digits"),
    Workload("mnist", (784, 256, 128, 10), "relu", "softmax", "cross_entropy", 128,
             samples=60_000, quick_samples=8192),
    Workload("mnist-adam", (784, 256, 128, 10), "relu", "softmax", "cross_entropy", 128,
             optimizer="adam", samples=60_000, quick_samples=8192),
    Workload("wide", (1024, 2048, 2048, 10), "relu", "softmax", "cross_entropy", 256,
             samples=16_384, quick_samples=4096),
    # Not one of issue 3's: the small network and batch of a tabular classifier, the commonest
    # model trained on a CPU; its products are too small for the GEMM-alone table.
    Workload("tabular", (20, 64, 64, 3), "relu", "softmax", "cross_entropy", 16,
             samples=16_384, quick_samples=4096, gemm_shapes=False),
    # Not one of issue 3's: predictions of the MNIST-shaped network (an untrained one: the
    # arithmetic is the same), in units of whole 256-row blocks.
    Workload("mnist-predict", (784, 256, 128, 10), "relu", "softmax", "cross_entropy", 256,
             samples=60_000, quick_samples=8192, gemm_shapes=False, inference=True,
             peers=("native", "native_avx2", "reference", "torch", "sklearn", "numpy")),
]


def sweep_workloads(quick: bool) -> list[Workload]:
    """784-w-w-10 relu networks at batch 128, for the throughput-vs-width plot."""
    widths = (64, 256, 1024) if quick else (32, 64, 128, 256, 512, 1024, 2048)
    return [Workload(f"width-{w}", (784, w, w, 10), "relu", "softmax", "cross_entropy", 128,
                     samples=16_384, quick_samples=4096,
                     peers=("native", "reference", "torch", "numpy"))
            for w in widths]


def by_name(name: str, quick: bool) -> Workload:
    for w in WORKLOADS + sweep_workloads(quick):
        if w.name == name:
            return w
    raise KeyError(name)


def make_data(w: Workload, quick: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(X, labels, T)``: float32 features, int64 class labels (argmax of T for mse), and the
    dense float32 target rows ``T`` (one-hot for cross_entropy)."""
    n = w.quick_samples if quick else w.samples
    rng = np.random.default_rng(1234)
    n_in, n_out = w.sizes[0], w.sizes[-1]
    if w.data == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        reps = -(-n // len(digits.target))
        X = np.tile(digits.data / 16.0, (reps, 1))[:n]
        labels = np.tile(digits.target, reps)[:n]
    else:
        X = rng.random((n, n_in)) if w.loss == "cross_entropy" else rng.uniform(-1, 1, (n, n_in))
        labels = rng.integers(0, n_out, n)
    X = np.ascontiguousarray(X, dtype=np.float32)
    labels = labels.astype(np.int64)
    if w.loss == "cross_entropy":
        T = np.zeros((n, n_out), np.float32)
        T[np.arange(n), labels] = 1.0
    else:
        # mse targets in (0, 1), what a sigmoid output can reach
        T = rng.uniform(0.05, 0.95, (n, n_out)).astype(np.float32)
        labels = T.argmax(axis=1)
    return X, labels, T


# The sgemm peak: NumPy's SGEMM_SIZE² float32 matmul.
SGEMM_SIZE = 2048

# GEMM-alone shapes (m, k, n): C(m×n) = A(m×k) · W(k×n)
SQUARES = (64, 128, 256, 512, 1024, 2048)


def training_shapes() -> list[tuple[int, int, int]]:
    """The forward products of the batched workloads: batch × n_{l-1} · n_{l-1} × n_l."""
    shapes = []
    for w in WORKLOADS:
        if w.batch == 1 or w.optimizer == "adam" or not w.gemm_shapes:
            continue
        for k, n in zip(w.sizes[:-1], w.sizes[1:]):
            if (w.batch, k, n) not in shapes:
                shapes.append((w.batch, k, n))
    return shapes
