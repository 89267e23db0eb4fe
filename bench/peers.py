"""The contenders, and the worker process each one runs in.

``python bench/peers.py PEER`` is started by run.py once per peer; it reads one JSON command
per line on stdin and answers one JSON line. Each peer lives in its own process so that no two
OpenMP runtimes (deltaprop's libgomp, PyTorch's bundled one) or BLAS thread pools share an
address space and spin against each other, and so a crashing peer only loses its own column.

A peer's ``unit(n, epochs)`` trains ``epochs`` epochs over the first ``n`` samples and returns
the seconds it took; run.py calibrates ``n`` so one unit takes a fixed time, then interleaves
the repeats of all peers, so a slow period of a shared machine hits every column alike.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workloads import SGEMM_SIZE, Workload, by_name, make_data  # noqa: E402

HERE = Path(__file__).resolve().parent


class Skip(Exception):
    """The peer does not apply to this workload (or is not installed)."""


class Peer:
    def __init__(self, w: Workload, quick: bool, threads: int):
        self.w = w
        self.X, self.labels, self.T = make_data(w, quick)

    def unit(self, n: int, epochs: int) -> float:
        raise NotImplementedError


class Deltaprop(Peer):
    """``MLP.fit`` — what a user calls; ``backend`` picks native or reference."""

    backend = "native"
    shuffle = True

    def __init__(self, w, quick, threads):
        super().__init__(w, quick, threads)
        import deltaprop as dp

        dp.set_num_threads(threads)
        out = None if w.output == "softmax" else w.output
        self.net = dp.MLP(list(w.sizes), activation=w.hidden, loss=w.loss, output_activation=out,
                          dtype="float32", backend=self.backend, seed=0)
        self.opt = dp.Adam(lr=w.lr) if w.optimizer == "adam" else dp.SGD(lr=w.lr)
        self.y = self.labels if w.loss == "cross_entropy" else self.T

    def unit(self, n, epochs):
        t0 = time.perf_counter()
        if self.w.inference:
            for _ in range(epochs):
                self.net.predict_proba(self.X[:n])
        else:
            self.net.fit(self.X[:n], self.y[:n], epochs=epochs, batch_size=self.w.batch,
                         optimizer=self.opt, shuffle=self.shuffle)
        return time.perf_counter() - t0


class Reference(Deltaprop):
    backend = "reference"


class DeltapropInOrder(Deltaprop):
    """``MLP.fit(..., shuffle=False)``: samples in order, as FANN's incremental training visits
    them, so the two compare like for like."""

    shuffle = False


class DeltapropAvx2(Deltaprop):
    """``MLP.fit`` on the AVX2 kernels, on a CPU that also has AVX-512: what a CPU with AVX2 and
    no AVX-512 (the issue's development machine) runs, at this machine's clock and caches."""

    def __init__(self, w, quick, threads):
        from deltaprop import _native

        supported = _native.cpu_info()["isas_supported"]  # from baseline to best
        if "avx2" not in supported:
            raise Skip("this CPU has no AVX2")
        if supported[-1] == "avx2":
            raise Skip("AVX2 is this CPU's best ISA: the native row")
        _native.select_isa("avx2")
        super().__init__(w, quick, threads)


class DeltapropEpoch(Deltaprop):
    """The backend's ``fit_epoch`` on dense targets: ``fit`` minus its Python-side checks."""

    def __init__(self, w, quick, threads):
        super().__init__(w, quick, threads)
        self.net._use(self.opt)
        self.epoch = 0

    def unit(self, n, epochs):
        X, T, backend = self.X[:n], self.T[:n], self.net._net
        t0 = time.perf_counter()
        for _ in range(epochs):
            backend.fit_epoch(X, T, self.opt, self.w.batch, True, 0, self.epoch)
            self.epoch += 1
        return time.perf_counter() - t0


class Torch(Peer):
    """PyTorch eager on the CPU: nn.Sequential, torch.optim, the canonical training loop."""

    def __init__(self, w, quick, threads):
        super().__init__(w, quick, threads)
        try:
            import torch
        except ImportError as exc:
            raise Skip("torch not installed") from exc
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        nn, self.torch = torch.nn, torch
        acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
        layers = []
        for i, (a, b) in enumerate(zip(w.sizes[:-1], w.sizes[1:])):
            layers.append(nn.Linear(a, b))
            last = i == len(w.sizes) - 2
            if not last:
                layers.append(acts[w.hidden]())
            elif w.output != "softmax":  # CrossEntropyLoss applies log-softmax itself
                layers.append(acts[w.output]())
        self.model = nn.Sequential(*layers)
        params = self.model.parameters()
        self.opt = (torch.optim.Adam(params, lr=w.lr) if w.optimizer == "adam"
                    else torch.optim.SGD(params, lr=w.lr))
        self.Xt = torch.from_numpy(self.X)
        if w.loss == "cross_entropy":
            self.yt = torch.from_numpy(self.labels)
            self.lossfn = nn.CrossEntropyLoss()
        else:
            self.yt = torch.from_numpy(self.T)
            mse = nn.MSELoss(reduction="sum")
            self.lossfn = lambda out, t: 0.5 / out.shape[0] * mse(out, t)  # DESIGN §1's mse

    def unit(self, n, epochs):
        torch, B = self.torch, self.w.batch
        t0 = time.perf_counter()
        if self.w.inference:
            with torch.no_grad():
                for _ in range(epochs):
                    torch.softmax(self.model(self.Xt[:n]), dim=1)
            return time.perf_counter() - t0
        for _ in range(epochs):
            perm = torch.randperm(n)
            for start in range(0, n, B):
                idx = perm[start:start + B]
                self.opt.zero_grad(set_to_none=True)
                loss = self.lossfn(self.model(self.Xt[idx]), self.yt[idx])
                loss.backward()
                self.opt.step()
        return time.perf_counter() - t0


class Sklearn(Peer):
    """scikit-learn's MLPClassifier, one ``partial_fit`` per epoch, float32 input kept."""

    def __init__(self, w, quick, threads):
        super().__init__(w, quick, threads)
        if w.loss != "cross_entropy" or w.hidden not in ("relu", "tanh"):
            raise Skip("MLPClassifier has no sigmoid-output mse model")
        from sklearn.neural_network import MLPClassifier
        from threadpoolctl import threadpool_limits

        self.limits = threadpool_limits(threads)  # kept alive: the limit lasts as long
        common = dict(hidden_layer_sizes=w.sizes[1:-1], activation=w.hidden, alpha=0.0,
                      batch_size=w.batch, learning_rate_init=w.lr, shuffle=True, random_state=0)
        if w.optimizer == "adam":
            self.clf = MLPClassifier(solver="adam", **common)
        else:
            self.clf = MLPClassifier(solver="sgd", momentum=0.0, nesterovs_momentum=False,
                                     learning_rate="constant", **common)
        self.classes = np.arange(w.sizes[-1])
        if w.inference:  # a fitted model to predict with
            self.clf.partial_fit(self.X[:w.batch], self.labels[:w.batch], classes=self.classes)

    def unit(self, n, epochs):
        t0 = time.perf_counter()
        for _ in range(epochs):
            if self.w.inference:
                self.clf.predict_proba(self.X[:n])
            else:
                self.clf.partial_fit(self.X[:n], self.labels[:n], classes=self.classes)
        return time.perf_counter() - t0


class Numpy(Peer):
    def __init__(self, w, quick, threads):
        super().__init__(w, quick, threads)
        from numpy_loop import NumpyMLP
        from threadpoolctl import threadpool_limits

        self.limits = threadpool_limits(threads)
        self.net = NumpyMLP(w.sizes, w.hidden, w.output, w.loss, w.optimizer, w.lr)
        self.rng = np.random.default_rng(0)

    def unit(self, n, epochs):
        X, T = self.X[:n], self.T[:n]
        t0 = time.perf_counter()
        with np.errstate(over="ignore"):
            for _ in range(epochs):
                if self.w.inference:
                    self.net.predict(X)
                else:
                    self.net.fit_epoch(X, T, self.w.batch, self.rng)
        return time.perf_counter() - t0


class Sgemm(Peer):
    """NumPy's 2048² float32 matmul, the machine's sgemm rate, timed as a peer: run.py
    interleaves its units with a workload's repeats, so a workload's % of peak can be read
    against the sgemm rate of the same minutes of a shared machine. A unit runs ``n · epochs``
    matmuls."""

    def __init__(self, w, quick, threads):
        from threadpoolctl import threadpool_limits

        self.limits = threadpool_limits(threads)
        rng = np.random.default_rng(0)
        self.A, self.B = (rng.random((SGEMM_SIZE, SGEMM_SIZE), dtype=np.float32) for _ in "AB")

    def unit(self, n, epochs):
        t0 = time.perf_counter()
        for _ in range(n * epochs):
            self.A @ self.B
        return time.perf_counter() - t0


def compiled(name: str, flags: list[str], missing: str) -> Path:
    """bench/NAME.c compiled with ``cc`` into bench/build/NAME, once (again when the source is
    newer); Skip with ``missing`` and the compiler's last words where it does not compile."""
    exe = HERE / "build" / name
    src = HERE / f"{name}.c"
    if exe.exists() and exe.stat().st_mtime >= src.stat().st_mtime:
        return exe
    exe.parent.mkdir(exist_ok=True)
    res = subprocess.run(["cc", "-O2", "-o", str(exe), str(src), *flags],
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise Skip(f"{missing}: " + (res.stderr.strip().splitlines() or [""])[-1][:120])
    return exe


def fann_binary() -> Path:
    """bench/fann_bench.c against Debian's libfann-dev (float build)."""
    return compiled("fann_bench", ["-lfloatfann", "-lm"],
                    "FANN not installed (apt-get install libfann-dev)")


def cpus_allowed() -> int:
    """CPUs this process may run on (Linux), or 1 where the OS does not say."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1


def round_trip_ns(n: int) -> float:
    """Nanoseconds a round trip of a cache line between the first two CPUs took, over ``n``."""
    if cpus_allowed() < 2:
        raise Skip("needs two CPUs")
    exe = compiled("core_to_core", ["-pthread"], "core_to_core.c did not compile")
    out = subprocess.run([str(exe), str(n)], capture_output=True, text=True, check=True).stdout
    return float(out.split()[1])


class CoreToCore(Peer):
    """A cache line passed between the first two CPUs (bench/core_to_core.c), timed as a peer:
    run.py interleaves it with a workload's repeats, so the report shows how far apart the
    cores were in the same minutes. A unit runs ``n · epochs`` round trips."""

    def __init__(self, w, quick, threads):
        if threads < 2:
            raise Skip("needs two threads")
        round_trip_ns(1000)  # compiles the probe, or skips

    def unit(self, n, epochs):
        return round_trip_ns(n * epochs) * n * epochs / 1e9


class Fann(Peer):
    """FANN's incremental training in C; single-threaded (FANN has no threads)."""

    def __init__(self, w, quick, threads):
        if w.batch != 1:
            raise Skip("FANN trains online only here")
        self.w, self.exe = w, fann_binary()

    def unit(self, n, epochs):
        # The C program times its own epochs, so process start-up is not counted.
        args = [str(self.exe), ",".join(map(str, self.w.sizes)), self.w.hidden, self.w.output,
                str(n), str(epochs), "1"]
        out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
        rate = float(out.split()[1])
        return n * epochs / rate


PEERS = {"native": Deltaprop, "native_epoch": DeltapropEpoch, "native_in_order": DeltapropInOrder,
         "native_avx2": DeltapropAvx2,
         "reference": Reference, "torch": Torch, "sklearn": Sklearn, "numpy": Numpy, "fann": Fann,
         "sgemm": Sgemm, "core_to_core": CoreToCore}


def repeat_timed(call, budget: float) -> list:
    """Seconds of each call, after one warm-up call, repeated for ``budget`` seconds (at least 5
    calls, at most 2000)."""
    call()
    times, end = [], time.perf_counter() + budget
    while len(times) < 5 or (time.perf_counter() < end and len(times) < 2000):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return times


def gemm_times(shape: tuple[int, int, int], impl: str, threads: int, budget: float) -> list:
    """Seconds per call of C = A·W, repeated for ``budget`` seconds (at least 5 calls)."""
    m, k, n = shape
    rng = np.random.default_rng(0)
    A = rng.random((m, k), dtype=np.float32)
    W = rng.random((k, n), dtype=np.float32)
    if impl == "native":
        import deltaprop as dp
        from deltaprop import _native

        dp.set_num_threads(threads)
        def call():
            return _native.forward_layer(A, W, None, "identity", 0.0)
    else:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
        def call():
            return A @ W
    return repeat_timed(call, budget)


def products_times(workload: str, quick: bool, threads: int, budget: float) -> list:
    """Seconds per training step's products alone, through NumPy/OpenBLAS: the forward A·W,
    delta D·Wᵀ (not for the first layer) and gradient Aᵀ·D GEMMs of one batch, into preallocated
    outputs, with no activation, loss, update or data movement. What a trainer built on this
    BLAS could at most reach."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)
    w = by_name(workload, quick)
    B, sizes = w.batch, w.sizes
    rng = np.random.default_rng(0)
    W = [rng.random((a, b), dtype=np.float32) for a, b in zip(sizes, sizes[1:])]
    A = [rng.random((B, s), dtype=np.float32) for s in sizes]
    D = [rng.random((B, s), dtype=np.float32) for s in sizes]
    layers = range(1, len(sizes))
    products = ([(A[j - 1], W[j - 1], np.empty((B, sizes[j]), np.float32)) for j in layers]
                + [(D[j], W[j - 1].T, np.empty((B, sizes[j - 1]), np.float32))
                   for j in layers if j > 1]
                + [(A[j - 1].T, D[j], np.empty((sizes[j - 1], sizes[j]), np.float32))
                   for j in layers])

    def step():
        for a, b, out in products:
            np.matmul(a, b, out=out)

    return repeat_timed(step, budget)


def weights_digest(workload: str, quick: bool, threads: int) -> str:
    """Hash of the weights after one seeded epoch (of a prediction workload, of the
    predictions): equal hashes across thread counts show the bitwise thread-count invariance
    DESIGN §2 promises."""
    import hashlib

    w = by_name(workload, quick)
    peer = Deltaprop(w, quick, threads)
    n = min(len(peer.X), 64 * w.batch)
    if w.inference:
        arrays = [peer.net.predict_proba(peer.X[:n])]
    else:
        peer.unit(n, 1)
        weights, biases = peer.net.get_weights()
        arrays = weights + (biases or [])
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def blas_info() -> list:
    from threadpoolctl import threadpool_info

    return [{k: v for k, v in d.items() if k != "filepath"} for d in threadpool_info()]


def serve(name: str) -> None:
    # Replies go to a private copy of stdout; anything a library prints goes to stderr.
    reply = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    peer = None
    for line in sys.stdin:
        cmd = json.loads(line)
        try:
            op = cmd["op"]
            if op == "setup":
                peer = None
                w = by_name(cmd["workload"], cmd["quick"])
                peer = PEERS[name](w, cmd["quick"], cmd["threads"])
                ans = {"ok": True}
            elif op == "unit":
                ans = {"seconds": peer.unit(cmd["n"], cmd["epochs"])}
            elif op == "gemm":
                ans = {"times": gemm_times(tuple(cmd["shape"]), name, cmd["threads"],
                                           cmd["budget"])}
            elif op == "products":
                ans = {"times": products_times(cmd["workload"], cmd["quick"], cmd["threads"],
                                               cmd["budget"])}
            elif op == "round_trip":
                ans = {"ns": round_trip_ns(cmd["n"])}
            elif op == "digest":
                ans = {"digest": weights_digest(cmd["workload"], cmd["quick"], cmd["threads"])}
            elif op == "info":
                ans = {"blas": blas_info(), "env": {k: os.environ.get(k) for k in
                                                     ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}}
                if name == "torch":
                    import torch

                    ans["torch"] = torch.__version__
            elif op == "quit":
                break
            else:
                raise ValueError(op)
        except Skip as exc:
            ans = {"skip": str(exc)}
        except Exception as exc:  # a peer's failure is reported in its column, not fatal
            ans = {"error": f"{type(exc).__name__}: {exc}"}
        reply.write(json.dumps(ans) + "\n")
        reply.flush()


if __name__ == "__main__":
    serve(sys.argv[1])
