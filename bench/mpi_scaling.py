"""Data-parallel scaling of ``MLP.fit(..., comm=)``: measured here, modelled for clusters.

    python bench/mpi_scaling.py [--quick]

Part 1 runs ``mpiexec -n p`` for p = 1, 2, 4 (one OpenMP thread per rank) on three workloads
and reports throughput, speedup and the share of each step spent in the Allreduce. On a machine
with fewer cores than ranks the ranks share cores: that measures overhead, not scaling.

Part 2 models a cluster of p nodes. Per step a node computes its slice of the global batch
(``ceil(B/p)`` rows; the time is *measured here*, with all of this machine's cores, as one node)
and applies the full update; then the gradients (4 bytes per float32 parameter) are summed by
an Allreduce, modelled as the faster of

* ring (reduce-scatter + allgather): ``2(p-1)·α + 2(p-1)/p · bytes/β``
* recursive doubling:               ``log2(p)·(α + bytes/β)``

with bandwidth β the nominal link rate and latency α = 30 µs (10 Gb/s Ethernet, TCP) or
5 µs (100 Gb/s, RDMA). Nothing overlaps communication with compute (deltaprop does not), so
efficiency = t(B rows on one node) / (p · (t_compute(ceil(B/p)) + t_allreduce)).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time

import numpy as np
from workloads import training_flops  # bench/, the script's directory

# The bench workloads (float32, like bench/run.py's): name, sizes, batch, samples (full, quick).
WORKLOADS = {
    "mnist": ((784, 256, 128, 10), 128, 16384, 4096),
    "wide": ((1024, 2048, 2048, 10), 256, 4096, 1024),
    "digits": ((64, 128, 64, 10), 32, 16384, 4096),
}
NETWORKS = {"10 Gb/s": (10e9 / 8, 30e-6), "100 Gb/s": (100e9 / 8, 5e-6)}


def make(name: str, samples: int, seed: int = 0):
    import deltaprop as dp

    sizes, batch, _, _ = WORKLOADS[name]
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(samples, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], samples)
    return dp.MLP(list(sizes), dtype="float32", seed=seed), X, y, batch


def worker(name: str, samples: int, epochs: int) -> None:
    """One rank of an ``mpiexec`` run: time fit and the Allreduce; rank 0 prints JSON."""
    from mpi4py import MPI

    import deltaprop as dp

    comm = MPI.COMM_WORLD
    net, X, y, batch = make(name, samples)
    opt = dp.SGD(lr=0.01)
    net.fit(X[: batch * 4], y[: batch * 4], epochs=1, batch_size=batch, optimizer=opt,
            comm=comm)  # warm-up: buffers, page faults, MPI connections
    comm.Barrier()
    start = time.perf_counter()
    net.fit(X, y, epochs=epochs, batch_size=batch, optimizer=opt, comm=comm)
    seconds = comm.allreduce(time.perf_counter() - start, op=MPI.MAX)
    buf = np.zeros(net._net.n_parameters + 2, dtype=np.float32)  # what fit reduces per step
    reps = 30
    comm.Barrier()
    start = time.perf_counter()
    for _ in range(reps):
        comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
    allreduce = comm.allreduce((time.perf_counter() - start) / reps, op=MPI.MAX)
    if comm.Get_rank() == 0:
        steps = epochs * math.ceil(samples / batch)
        print(json.dumps({"samples_per_s": epochs * samples / seconds,
                          "step_s": seconds / steps, "allreduce_s": allreduce}), flush=True)


def launch(name: str, p: int, samples: int, epochs: int, tries: int = 3) -> dict:
    """The fastest of ``tries`` runs: other work on a shared machine only ever adds time."""
    exe = shutil.which("mpiexec", path=os.path.dirname(sys.executable) + os.pathsep +
                       os.environ.get("PATH", ""))
    if exe is None:
        sys.exit("mpiexec not found: pip install 'deltaprop[mpi]'")
    cmd = [exe, "-n", str(p), sys.executable, __file__, "--worker", name, str(samples),
           str(epochs)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    runs = []
    for _ in range(tries):
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600,
                             check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return max(runs, key=lambda r: r["samples_per_s"])


def step_seconds(net, X, y, rows: int, optimizer, reps: int) -> float:
    """One rank's step on ``rows`` rows (gather, gradients, scale, update): the fastest of
    ``reps``, since other work on a shared machine only ever adds time."""
    from deltaprop.validation import as_targets, cast

    flat = np.zeros(net._net.n_parameters, dtype=np.float32)
    times = []
    for r in range(reps + 2):
        idx = np.arange(r * rows, (r + 1) * rows) % X.shape[0]
        start = time.perf_counter()
        net._net.gradients_into(cast(X[idx], net.dtype), as_targets(y[idx], net.spec, rows), flat)
        flat *= np.float32(0.5)
        net._net.apply_gradients(flat, optimizer)
        times.append(time.perf_counter() - start)
    return float(min(times[2:]))


def allreduce_model(p: int, nbytes: float, beta: float, alpha: float) -> float:
    if p == 1:
        return 0.0
    ring = 2 * (p - 1) * alpha + 2 * (p - 1) / p * nbytes / beta
    doubling = math.ceil(math.log2(p)) * (alpha + nbytes / beta)
    return min(ring, doubling)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller data sets")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], int(args.worker[1]), int(args.worker[2]))
        return

    import deltaprop as dp

    print(f"# MPI scaling: {os.cpu_count()} cores here, {dp.cpu_info()}, "
          f"load average {os.getloadavg()[0]:.2f} at the start\n")
    print("## Measured: mpiexec -n p on this machine, OMP_NUM_THREADS=1 per rank\n")
    print("| workload | p | samples/s | speedup | step ms | Allreduce ms | Allreduce share |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, (sizes, batch, full, quick) in WORKLOADS.items():
        samples = quick if args.quick else full
        base = None
        for p in (1, 2, 4):
            r = launch(name, p, samples, epochs=2)
            base = base or r["samples_per_s"]
            print(f"| {name} {'-'.join(map(str, sizes))} b{batch} | {p} | "
                  f"{r['samples_per_s']:,.0f} | {r['samples_per_s'] / base:.2f} | "
                  f"{r['step_s'] * 1e3:.2f} | {r['allreduce_s'] * 1e3:.3f} | "
                  f"{r['allreduce_s'] / r['step_s']:.0%} |", flush=True)

    print("\nBaseline without MPI, fit() running whole epochs in C++ (same data, same machine):\n")
    print("| workload | threads | samples/s |")
    print("| --- | ---: | ---: |")
    for name, (_, batch, full, quick) in WORKLOADS.items():
        net, X, y, _ = make(name, quick if args.quick else full)
        for threads in (1, dp.get_num_threads()):
            previous = dp.get_num_threads()
            dp.set_num_threads(threads)
            net.fit(X[: batch * 4], y[: batch * 4], epochs=1, batch_size=batch)
            rate = 0.0
            for _ in range(3):  # the fastest of three, as for the MPI runs
                start = time.perf_counter()
                net.fit(X, y, epochs=2, batch_size=batch)
                rate = max(rate, 2 * X.shape[0] / (time.perf_counter() - start))
            dp.set_num_threads(previous)
            print(f"| {name} b{batch} | {threads} | {rate:,.0f} |", flush=True)

    threads = dp.get_num_threads()
    print(f"\n## Modelled: p nodes, each as fast as this machine ({threads} threads)\n")
    print("Strong scaling keeps the global batch B (each node computes ceil(B/p) rows); weak "
          "scaling gives each node B rows (global batch p·B). 'overlap' is the bound if the "
          "whole Allreduce hid behind compute.\n")
    print("| workload | params | MB/step | GFLOP/step | node GFLOP/s | network | p | rows/node "
          "| compute ms | Allreduce ms | efficiency | with overlap | weak scaling |")
    print("| --- " + "| ---: " * 4 + "| --- " + "| ---: " * 7 + "|")
    for name, (sizes, batch, _, _) in WORKLOADS.items():
        net, X, y, _ = make(name, max(4 * batch, 512))
        opt = dp.SGD(lr=0.01)
        P = net._net.n_parameters
        nbytes = 4 * (P + 2)
        reps = 8 if name == "wide" else 40
        t1 = step_seconds(net, X, y, batch, opt, reps)
        flops = training_flops(sizes) * batch
        for p in (8, 64):
            rows = math.ceil(batch / p)
            tc = step_seconds(net, X, y, rows, opt, reps)
            for network, (beta, alpha) in NETWORKS.items():
                tm = allreduce_model(p, nbytes, beta, alpha)
                print(f"| {name} b{batch} | {P:,} | {nbytes / 1e6:.2f} | {flops / 1e9:.3f} | "
                      f"{flops / t1 / 1e9:.0f} | {network} | {p} | {rows} | {tc * 1e3:.3f} | "
                      f"{tm * 1e3:.3f} | {t1 / (p * (tc + tm)):.0%} | "
                      f"{t1 / (p * max(tc, tm)):.0%} | {t1 / (t1 + tm):.0%} |", flush=True)


    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
