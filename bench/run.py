#!/usr/bin/env python
"""deltaprop against its peers, side by side in one run: ``python bench/run.py [--quick]``.

Each peer runs in its own worker process (bench/peers.py). For every workload the sample count
of one timed unit is calibrated per peer to a fixed duration, then the repeats of all peers are
interleaved and the median is reported, so machine noise hits every column alike and the ratios
stay honest. See bench/README.md.
"""

from __future__ import annotations

import os

# Some machines set these for an old OpenBLAS; they mislead the one a current NumPy bundles into
# a slower kernel. They are removed before NumPy is imported here, and so from every worker's
# environment; their values are recorded in the results.
BLAS_ENV_REMOVED = {k: os.environ.pop(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
                    if k in os.environ}

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import report  # noqa: E402
from machine_load import LoadGuard  # noqa: E402
from workloads import SGEMM_SIZE, SQUARES, WORKLOADS, sweep_workloads, training_shapes  # noqa: E402

# Round trips a run of bench/core_to_core.c makes: 7.5 ms with the CPUs 75 ns apart, 0.3 s at 3 µs.
PROBE_ROUND_TRIPS = 100_000

ALL_PEERS = ("native", "native_epoch", "native_in_order", "native_avx2", "reference", "torch",
             "sklearn", "numpy", "fann")


class Worker:
    """One peer's process; ``ask`` sends a command and waits for its one-line answer."""

    def __init__(self, peer: str):
        self.peer = peer
        self.proc = subprocess.Popen([sys.executable, str(HERE / "peers.py"), peer],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env=dict(os.environ))

    def ask(self, **cmd) -> dict:
        if self.proc.poll() is not None:
            return {"error": f"worker exited with {self.proc.returncode}"}
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        return json.loads(line) if line else {"error": "worker died"}

    def close(self) -> None:
        if self.proc.poll() is None:
            self.ask(op="quit")
            self.proc.wait(timeout=30)


def calibrate_unit(unit, samples: int, batch: int, target_s: float) -> tuple[int, int] | dict:
    """Samples (whole batches, at most ``samples``) and epochs of one unit lasting about
    ``target_s``. ``unit(n, epochs)`` answers ``{"seconds": ...}``, or anything else to stop."""
    cap = samples // batch * batch  # the most whole batches there are
    n, epochs = min(cap, max(4 * batch, 256) // batch * batch), 1
    ans = unit(n, epochs)  # warm-up: first touch, workspaces
    while "seconds" in ans:
        ans = unit(n, epochs)
        if "seconds" not in ans or ans["seconds"] >= target_s / 8:
            break
        # Grow n up to the cap, then the epochs. (n was compared with `samples` once: where
        # samples is no multiple of the batch, n stopped short of it and never grew again.)
        if n < cap:
            n = min(cap, n * 8 // batch * batch)
        else:
            epochs *= 8
    if "seconds" not in ans:
        return ans
    want = n * epochs / ans["seconds"] * target_s
    if want <= cap:
        return max(batch, int(want) // batch * batch), 1
    return cap, max(1, round(want / cap))


class Bench:
    def __init__(self, args):
        self.args = args
        self.quick = args.quick
        self.target_s = 0.1 if args.quick else 0.5  # duration of one timed unit
        self.reps = 3 if args.quick else 7
        self.workers: dict[str, Worker] = {}
        self.guard = LoadGuard(max_wait_s=3.0 if args.quick else 10.0,
                               budget_s=20.0 if args.quick else 240.0)

    def ask(self, key: str, **cmd) -> dict:
        """``cmd`` to worker ``key``; a timed command (unit, gemm) waits for a quiet machine
        and is repeated (up to 3 tries) when another process disturbed it."""
        wk = self.worker(key)
        if cmd.get("op") not in ("unit", "gemm", "products", "round_trip"):
            return wk.ask(**cmd)
        for _ in range(3):
            # The pause also lets the previous peer's threads fall asleep: OpenBLAS's spin
            # for ~2^28 cycles (~0.1 s) after a call, and would share the next peer's cores.
            self.guard.wait_quiet()
            mark = self.guard.start(wk.proc.pid)
            ans = wk.ask(**cmd)
            if not self.guard.disturbed(wk.proc.pid, mark) or not self.guard.patient:
                return ans
        return dict(ans, disturbed=True)

    def worker(self, key: str) -> Worker:
        """The worker process of ``key``: a peer name, or ``peer@threads`` for a second one."""
        if key not in self.workers:
            self.workers[key] = Worker(key.split("@")[0])
        return self.workers[key]

    def log(self, msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    def calibrate(self, w, key: str, samples: int) -> tuple[int, int] | dict:
        """Samples and epochs of one unit lasting about ``target_s`` for this peer (for the
        sgemm peer: matmuls, and one epoch)."""
        if key.startswith("core_to_core@"):
            return PROBE_ROUND_TRIPS, 1
        if key.startswith("sgemm@"):
            self.ask(key, op="unit", n=1, epochs=1)  # warm-up
            ans = self.ask(key, op="unit", n=1, epochs=1)
            return (max(1, round(self.target_s / ans["seconds"])), 1) if "seconds" in ans else ans
        return calibrate_unit(lambda n, epochs: self.ask(key, op="unit", n=n, epochs=epochs),
                              samples, w.batch, self.target_s)

    def measure(self, w, entries: list[tuple[str, int]]) -> list[dict]:
        """Interleaved repeats of every (peer, threads) entry on workload ``w``."""
        samples = w.quick_samples if self.quick else w.samples
        rows, active = [], []
        for peer, threads in entries:
            key = f"{peer}@{threads}"
            row = {"peer": peer, "threads": threads}
            ans = self.ask(key, op="setup", workload=w.name, quick=self.quick,
                                        threads=threads)
            if "ok" in ans:
                cal = self.calibrate(w, key, samples)
                if isinstance(cal, dict):
                    ans = cal
                else:
                    row.update(n=cal[0], epochs=cal[1], seconds=[], clean=[], repeat=[])
                    active.append((key, row))
            row.update({k: ans[k] for k in ("skip", "error") if k in ans})
            rows.append(row)
        for rep in range(self.reps):
            # rotate the order, so no peer always runs right after the same neighbour
            for key, row in active[rep % len(active):] + active[:rep % len(active)]:
                if "error" in row:
                    continue
                ans = self.ask(key, op="unit", n=row["n"], epochs=row["epochs"])
                if "seconds" in ans:
                    row["seconds"].append(ans["seconds"])
                    row["clean"].append(not ans.get("disturbed"))
                    row["repeat"].append(rep)
                else:
                    row["error"] = ans.get("error", str(ans))
        for row in rows:
            if row.get("seconds"):
                # Repeats another process disturbed even after retries are left out of the
                # median while at least 3 undisturbed ones remain.
                clean = [i for i, ok in enumerate(row["clean"]) if ok]
                row["disturbed"] = len(row["seconds"]) - len(clean)
                kept = clean if len(clean) >= 3 else range(len(row["seconds"]))
                rates = [row["n"] * row["epochs"] / row["seconds"][i] for i in kept]
                row["rates"] = rates
                row["rate_repeats"] = [row["repeat"][i] for i in kept]
                row["median"] = statistics.median(rates)
                row["gflops"] = row["median"] * w.flops_per_sample / 1e9
        return rows

    def peak(self, threads: int) -> float:
        """Best GFLOP/s of NumPy's 2048² float32 matmul: the machine's sgemm peak."""
        times = self.ask("numpy", op="gemm", shape=[SGEMM_SIZE] * 3,
                                         threads=threads, budget=1.0 if self.quick else 2.5)
        return 2 * SGEMM_SIZE**3 / min(times["times"]) / 1e9

    def products(self, w, threads: int) -> dict:
        """The step's GEMMs alone through NumPy/OpenBLAS (peers.products_times): samples/s and
        GFLOP/s (the workload's FLOP count) of a trainer that did nothing else."""
        ans = self.ask("numpy", op="products", workload=w.name, quick=self.quick,
                       threads=threads, budget=0.5 if self.quick else 2.0)
        if "times" not in ans:
            return ans
        rate = w.batch / statistics.median(ans["times"])
        return {"median": rate, "gflops": rate * w.flops_per_sample / 1e9}

    def gemm(self, threads: int) -> list[dict]:
        shapes = [("square", (s, s, s)) for s in SQUARES]
        shapes += [("training", s) for s in training_shapes()]
        rows = []
        for kind, shape in shapes:
            row = {"kind": kind, "shape": list(shape)}
            pooled: dict[str, list[float]] = {"native": [], "numpy": []}
            ratios = []  # NumPy's median time over deltaprop's, round by round
            # Alternate in short rounds, so drift affects both alike: the machine's rate swings
            # over seconds, and rows of a few microseconds a call swung 0.6-1.3x between runs
            # with three rounds of 0.2 s.
            for _ in range(3 if self.quick else 7):
                times = {}
                for impl in pooled:
                    ans = self.ask(impl, op="gemm", shape=list(shape), threads=threads,
                                   budget=0.05 if self.quick else 0.1)
                    times[impl] = ans.get("times", [])
                    pooled[impl] += times[impl]
                if all(times.values()):
                    ratios.append(statistics.median(times["numpy"]) /
                                  statistics.median(times["native"]))
            flops = 2 * shape[0] * shape[1] * shape[2]
            for impl, times in pooled.items():
                if times:
                    row[impl] = flops / statistics.median(times) / 1e9
            if ratios:
                row["ratio"] = statistics.median(ratios)
                row["ratio_spread"] = [min(ratios), max(ratios)]
            if threads > 1:  # how far apart the cores were for this row (bench/core_to_core.c)
                trip = self.ask("numpy", op="round_trip", n=PROBE_ROUND_TRIPS)
                if "ns" in trip:
                    row["round_trip_ns"] = trip["ns"]
            rows.append(row)
            self.log(f"  gemm {shape}: " + ", ".join(f"{k} {row.get(k, 0):.1f}" for k in pooled))
        return rows

    def run(self) -> dict:
        args, threads = self.args, sorted(self.args.threads)
        top = threads[-1]
        res: dict = {"quick": self.quick, "threads": threads, "reps": self.reps,
                     "unit_seconds": self.target_s, "blas_env_removed": BLAS_ENV_REMOVED}
        res["meta"] = report.machine(self.worker("numpy").ask(op="info"),
                                     self.worker("torch").ask(op="info"))
        self.log(f"sgemm peak (NumPy 2048² float32, best of several) at {threads} threads ...")
        res["peak"] = {t: self.peak(t) for t in threads}
        self.log(f"  {res['peak']}")
        wanted = set(args.peers.split(",")) if args.peers else set(ALL_PEERS)
        workloads = [w for w in WORKLOADS if not args.only or w.name in args.only.split(",")]
        res["workloads"] = []
        for w in workloads:
            entries = [(p, top) for p in w.peers if p in wanted]
            # For the scaling table: deltaprop, and the NumPy loop as a trainer built on BLAS.
            scaled = ["native"] + (["numpy"] if "numpy" in w.peers and "numpy" in wanted else [])
            entries += [(p, t) for p in scaled for t in threads[:-1]]
            # The sgemm rate of the same minutes, for % of peak beside the best single call's.
            entries.append(("sgemm", top))
            # How far apart the cores were in the same minutes (bench/core_to_core.c).
            if top > 1:
                entries.append(("core_to_core", top))
            self.log(f"{w.label} ...")
            t0 = time.perf_counter()
            rows = self.measure(w, entries)
            sgemm = next(r for r in rows if r["peer"] == "sgemm")
            rows.remove(sgemm)
            if "median" in sgemm:  # its "samples" are matmuls
                sgemm["gflops"] = sgemm["median"] * 2 * SGEMM_SIZE**3 / 1e9
            probe = next((r for r in rows if r["peer"] == "core_to_core"), {})
            if probe:
                rows.remove(probe)
            if "rates" in probe:  # its "samples" are round trips
                probe["ns"] = sorted(1e9 / r for r in probe["rates"])
                # Each repeat's probe beside the rates of the same repeat: how far apart the
                # cores were while each was timed (report.by_placement).
                trips = {rep: 1e9 / r for rep, r in zip(probe["rate_repeats"], probe["rates"])}
                for row in rows:
                    row["round_trips"] = [trips.get(rep) for rep in row.get("rate_repeats", [])]
            digests = {t: self.worker("native").ask(op="digest", workload=w.name,
                                                    quick=self.quick, threads=t).get("digest")
                       for t in threads}
            res["workloads"].append({"name": w.name, "label": w.label, "batch": w.batch,
                                     "inference": w.inference,
                                     "flops_per_sample": w.flops_per_sample, "rows": rows,
                                     "sgemm_interleaved": sgemm, "core_to_core": probe,
                                     "digests": digests})
            if w.batch > 1 and not w.inference and "numpy" in wanted:
                # At every thread count, so the scaling table shows what the shapes allow.
                by_threads = {t: self.products(w, t) for t in threads}
                res["workloads"][-1]["products"] = by_threads[top]
                res["workloads"][-1]["products_by_threads"] = by_threads
            self.log(report.workload_table(res["workloads"][-1], res["peak"][top], top))
            self.log(f"  ({time.perf_counter() - t0:.0f} s)")
        if not args.no_sweep:
            res["sweep"] = []
            for w in sweep_workloads(self.quick):
                self.log(f"{w.label} ...")
                rows = self.measure(w, [(p, top) for p in w.peers if p in wanted])
                res["sweep"].append({"name": w.name, "width": w.sizes[1], "label": w.label,
                                     "flops_per_sample": w.flops_per_sample, "rows": rows})
        if not args.no_gemm:
            self.log("GEMM alone ...")
            res["gemm"] = self.gemm(top)
        # A shared machine may have been busier when the peak was first taken: keep the best.
        for t in threads:
            res["peak"][t] = max(res["peak"][t], self.peak(t))
        res["quiet_wait_seconds"] = self.guard.waited_s
        res["disturbed_repeats_discarded"] = self.guard.discarded
        return res

    def close(self) -> None:
        for wk in self.workers.values():
            wk.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes and few repeats (< 2 min)")
    ap.add_argument("--threads", default=None,
                    help="comma-separated thread counts; the largest is the headline "
                         "(default: 1 and all cores)")
    ap.add_argument("--json", metavar="FILE", help="write all measurements as JSON")
    ap.add_argument("--plot", metavar="FILE", help="plot throughput against layer width")
    ap.add_argument("--write-results", action="store_true",
                    help="regenerate bench/RESULTS.md, bench/throughput.png, bench/results.json")
    ap.add_argument("--only", help="comma-separated workload names (default: all)")
    ap.add_argument("--peers", help=f"comma-separated subset of {','.join(ALL_PEERS)}")
    ap.add_argument("--no-sweep", action="store_true", help="skip the width sweep")
    ap.add_argument("--no-gemm", action="store_true", help="skip the GEMM-alone section")
    args = ap.parse_args(argv)
    cores = os.cpu_count() or 1
    args.threads = ([int(t) for t in args.threads.split(",")] if args.threads
                    else sorted({1, cores}))

    bench = Bench(args)
    t0 = time.perf_counter()
    try:
        res = bench.run()
    finally:
        bench.close()
    res["wall_seconds"] = time.perf_counter() - t0
    text = report.full_report(res)
    print(text)
    if args.write_results:
        args.json = args.json or str(HERE / "results.json")
        args.plot = args.plot or str(HERE / "throughput.png")
    if args.plot and res.get("sweep"):
        report.plot(res, args.plot)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    if args.write_results:
        report.write_results(res, text, HERE / "RESULTS.md", Path(args.plot).name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
