"""Tables, the issue-3 target check, the width plot and bench/RESULTS.md from run.py's results."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import subprocess
from pathlib import Path

NAMES = {"native": "deltaprop native (fit)", "native_epoch": "deltaprop native (fit_epoch)",
         "native_in_order": "deltaprop native (fit, samples in order)",
         "native_avx2": "deltaprop native (fit, AVX2 kernels)",
         "reference": "deltaprop reference", "torch": "PyTorch eager", "sklearn":
         "scikit-learn MLPClassifier", "numpy": "NumPy/OpenBLAS loop", "fann": "FANN incremental"}


def _cmd(args: list[str]) -> str:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine(numpy_info: dict, torch_info: dict) -> dict:
    """What the numbers were measured on: CPU, ISA in use, library versions, commit."""
    import numpy as np

    import deltaprop as dp

    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    root = Path(__file__).resolve().parent.parent
    commit = _cmd(["git", "-C", str(root), "rev-parse", "--short", "HEAD"])
    if _cmd(["git", "-C", str(root), "status", "--porcelain", "--", "csrc", "python"]):
        commit += " (with uncommitted changes in csrc/ or python/)"
    try:
        import sklearn

        skl = sklearn.__version__
    except ImportError:
        skl = None
    return {"cpu": cpu, "cores": os.cpu_count(), "deltaprop": dp.__version__, "commit": commit,
            "cpu_info": dp.cpu_info(), "numpy": np.__version__, "python": platform.python_version(),
            "numpy_blas": numpy_info.get("blas"), "torch": torch_info.get("torch"),
            "sklearn": skl, "fann": _cmd(["dpkg-query", "-W", "-f=${Version}", "libfann-dev"])
            or None, "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}


def _si(x: float) -> str:
    for unit, f in (("M", 1e6), ("k", 1e3)):
        if x >= f:
            return f"{x / f:.3g}{unit}"
    return f"{x:.3g}"


def _ratio(x: float) -> str:
    return f"{x:.3g}×" if x < 1000 else f"{x:,.0f}×"


def _row(rows: list[dict], peer: str, threads: int | None = None) -> dict | None:
    for r in rows:
        if r["peer"] == peer and (threads is None or r["threads"] == threads) and "median" in r:
            return r
    return None


def _spread(r: dict) -> str:
    """The slowest and fastest repeat against the median."""
    lo, hi = min(r["rates"]), max(r["rates"])
    return f"{100 * (lo / r['median'] - 1):+.0f}% / {100 * (hi / r['median'] - 1):+.0f}%"


FLOPS_COUNTED = {False: "training FLOPs per sample (forward and gradient products, "
                        "deltas from the second layer on)",
                 True: "FLOPs per predicted sample (2·Σ n_(l-1)·n_l)"}


def workload_table(wl: dict, peak: float, threads: int) -> str:
    """One workload: samples/s (median and spread), GFLOP/s, % of sgemm peak, native ÷ row."""
    native = _row(wl["rows"], "native", threads)
    lines = [f"### {wl['label']}", "",
             f"{wl['flops_per_sample']:,} {FLOPS_COUNTED[wl.get('inference', False)]}, "
             f"{threads} threads", "",
             "| entry | samples/s (median) | spread (min–max) | GFLOP/s | % sgemm peak "
             "| native ÷ entry |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in wl["rows"]:
        if r["threads"] != threads:
            continue
        name = NAMES[r["peer"]]
        if wl.get("inference"):
            name = name.replace("(fit", "(predict_proba")
        if "median" not in r:
            why = r.get("skip") or r.get("error") or "no result"
            lines.append(f"| {name} | — | {why} | | | |")
            continue
        spread = _spread(r)
        if r.get("disturbed"):
            kept = "left out" if len(r["rates"]) < len(r["seconds"]) else "kept"
            spread += f" ({r['disturbed']} disturbed, {kept})"
        ratio = _ratio(native["median"] / r["median"]) if native else ""
        lines.append(f"| {name} | {_si(r['median'])} | {spread} | {r['gflops']:.3g} | "
                     f"{100 * r['gflops'] / peak:.1f}% | {ratio} |")
    sgemm = wl.get("sgemm_interleaved") or {}
    fraction = fraction_of_interleaved_sgemm(wl, threads)
    if fraction is not None:
        lines += ["", f"NumPy's 2048² sgemm, timed in the same interleaved repeats: "
                  f"{sgemm['gflops']:.3g} GFLOP/s (median; spread {_spread(sgemm)}). "
                  f"deltaprop native ran at {100 * fraction:.1f}% of the sgemm rate of the same "
                  "minutes; the column above divides by the best single call of the run."]
    trip = round_trip(wl)
    if trip:
        lines += ["", "A cache line's round trip between the first two CPUs "
                  f"(bench/core_to_core.c), timed in the same interleaved repeats: {trip}. "
                  "A virtual machine's vCPUs move between the host's cores; the farther apart "
                  "they are, the longer each thread waits for data the other wrote."]
        placed = by_placement(native) if native else {}
        if len(placed) == 2:
            lines[-1] += (f" Of deltaprop native's {len(native['rates'])} repeats, "
                          + " and ".join(f"{len(placed[p])} ran with the CPUs {p}{apart} "
                                         f"({_si(statistics.median(placed[p]))} samples/s)"
                                         for p, apart in (("near", ""), ("far", " apart")))
                          + f"; near: a round trip below {NEAR_NS:.0f} ns.")
    products = wl.get("products") or {}
    if "median" in products:
        lines += ["", "The step's GEMMs alone through NumPy/OpenBLAS (one batch's forward, "
                  "delta and gradient products into preallocated outputs, nothing else): "
                  f"{_si(products['median'])} samples/s, {products['gflops']:.3g} GFLOP/s, "
                  f"{100 * products['gflops'] / peak:.1f}% of sgemm peak — as fast as a "
                  "trainer built on that BLAS could go."]
    return "\n".join(lines) + "\n"


def fraction_of_interleaved_sgemm(wl: dict, threads: int) -> float | None:
    """deltaprop native's GFLOP/s over those of NumPy's 2048² sgemm timed in the same
    interleaved repeats: % of peak with the machine's slow and fast minutes in both."""
    native, sgemm = _row(wl["rows"], "native", threads), wl.get("sgemm_interleaved") or {}
    return native["gflops"] / sgemm["gflops"] if native and "gflops" in sgemm else None


def round_trip(wl: dict) -> str | None:
    """The core-to-core probe's round trips of a workload's repeats: median (fastest–slowest)."""
    ns = (wl.get("core_to_core") or {}).get("ns")
    if not ns:
        return None
    return f"{statistics.median(ns):,.0f} ns ({ns[0]:,.0f}–{ns[-1]:,.0f})"


# A round trip below this is two CPUs that share a cache (~55 ns on the AMD EPYC host of
# bench/RESULTS.md); its vCPUs were otherwise ~330 ns apart, for minutes at a time.
NEAR_NS = 150.0


def by_placement(r: dict) -> dict[str, list[float]]:
    """A row's kept rates split by the core-to-core probe of the same repeat: "near" (round trip
    below NEAR_NS) and "far"; repeats without a probe in neither."""
    out: dict[str, list[float]] = {}
    for rate, ns in zip(r.get("rates", []), r.get("round_trips") or []):
        if ns is not None:
            out.setdefault("near" if ns < NEAR_NS else "far", []).append(rate)
    return out


def products_scaling(wl: dict, threads: list) -> float | None:
    """How the step's GEMMs alone through OpenBLAS scale from the fewest threads to the most:
    what the workload's shapes allow a trainer built on that BLAS."""
    by = wl.get("products_by_threads") or {}
    lo, hi = by.get(threads[0]) or {}, by.get(threads[-1]) or {}
    return hi["median"] / lo["median"] if "median" in lo and "median" in hi else None


def peer_scaling(wl: dict, peer: str, threads: list) -> float | None:
    """How a trainer's samples/s scale from the fewest threads to the most."""
    lo, hi = _row(wl["rows"], peer, threads[0]), _row(wl["rows"], peer, threads[-1])
    return hi["median"] / lo["median"] if lo and hi else None


def scaling_table(res: dict) -> str:
    threads = res["threads"]
    head = " | ".join(f"{t} thr samples/s" for t in threads)
    ratio_head = f"{threads[-1]} ÷ {threads[0]} threads"
    lines = ["| workload | " + head + f" | {ratio_head} | the NumPy/OpenBLAS loop, {ratio_head} "
             f"| the step's GEMMs alone through OpenBLAS, {ratio_head} "
             "| weights (of mnist-predict: outputs) bitwise equal across thread counts "
             "| CPU-to-CPU round trip, median (range) |",
             "| --- |" + " ---: |" * (len(threads) + 3) + " --- | ---: |"]
    for wl in res["workloads"]:
        rs = [_row(wl["rows"], "native", t) for t in threads]
        cells = [(_si(r["median"]) if r else "—") for r in rs]
        ratios = [peer_scaling(wl, "native", threads), peer_scaling(wl, "numpy", threads),
                  products_scaling(wl, threads)]
        digests = set(wl.get("digests", {}).values())
        same = "yes" if len(digests) == 1 and None not in digests else "**no**"
        lines.append(f"| {wl['name']} | " + " | ".join(cells) + " | "
                     + " | ".join(f"{q:.2f}×" if q else "—" for q in ratios)
                     + f" | {same} | {round_trip(wl) or '—'} |")
    return "\n".join(lines) + "\n"


def gemm_ratio(r: dict) -> float | None:
    """deltaprop ÷ NumPy for one GEMM row: the median of its alternating rounds' ratios (older
    results: the ratio of the pooled medians)."""
    if "ratio" in r:
        return r["ratio"]
    return r["native"] / r["numpy"] if "native" in r and "numpy" in r else None


def gemm_table(res: dict) -> str:
    lines = ["| kind | m×k · k×n | deltaprop GFLOP/s | NumPy GFLOP/s | deltaprop ÷ NumPy "
             "| rounds' spread | CPU-to-CPU round trip after |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in res["gemm"]:
        m, k, n = r["shape"]
        ratio = gemm_ratio(r)
        spread = "–".join(f"{v:.2f}" for v in r["ratio_spread"]) if "ratio_spread" in r else "—"
        trip = f"{r['round_trip_ns']:,.0f} ns" if "round_trip_ns" in r else "—"
        lines.append(f"| {r['kind']} | {m}×{k} · {k}×{n} | {r.get('native', 0):.1f} | "
                     f"{r.get('numpy', 0):.1f} | {f'{ratio:.2f}×' if ratio else '—'} "
                     f"| {spread} | {trip} |")
    return "\n".join(lines) + "\n"


def targets(res: dict, placement: str | None = None) -> list[tuple[str, float | None, float]]:
    """Issue 3's targets as (what, measured value, goal). With a placement ("near" or "far"),
    the training targets from the medians of the repeats timed with the CPUs that far apart
    alone (one thread's rows: all repeats); None where there were none, and for GEMM alone."""
    top = res["threads"][-1]
    peak = res["peak"][top]
    wl = {w["name"]: w for w in res["workloads"]}

    def rate(r):
        if not r or placement is None or r["threads"] == 1:
            return r["median"] if r else None
        placed = by_placement(r).get(placement)
        return statistics.median(placed) if placed else None

    def ratio(name, a, b, ta=top, tb=top):
        if name not in wl:
            return None
        ra, rb = rate(_row(wl[name]["rows"], a, ta)), rate(_row(wl[name]["rows"], b, tb))
        return ra / rb if ra and rb else None

    def frac(name):
        r = _row(wl[name]["rows"], "native", top) if name in wl else None
        value = rate(r)
        return r["gflops"] * value / r["median"] / peak if value else None

    out = [("MNIST-shaped: % of sgemm peak", frac("mnist"), 0.90),
           ("MNIST-shaped: × PyTorch eager", ratio("mnist", "native", "torch"), 1.4),
           ("wide: % of sgemm peak", frac("wide"), 0.93),
           ("wide: × NumPy loop", ratio("wide", "native", "numpy"), 1.0),
           ("digits-shaped: × PyTorch eager", ratio("digits", "native", "torch"), 8.0),
           ("digits-shaped: × NumPy loop", ratio("digits", "native", "numpy"), 3.0),
           ("seed 2-3-1 online: × FANN", ratio("seed-online", "native", "fann"), 2.0),
           ("seed 2-3-1 online: × PyTorch eager", ratio("seed-online", "native", "torch"), 1000),
           ("64-128-64-10 online: × FANN", ratio("online-64", "native", "fann"), 5.0)]
    if res.get("gemm") and placement is None:
        rows = [(r, gemm_ratio(r)) for r in res["gemm"]]
        sq = [q for r, q in rows if q and r["kind"] == "square" and r["shape"][0] >= 512]
        tr = [q for r, q in rows if q and r["kind"] == "training"]
        out.append(("GEMM 512²–2048²: worst × NumPy", min(sq) if sq else None, 0.95))
        out.append(("GEMM training shapes: worst × NumPy", min(tr) if tr else None, 1.0))
    if len(res["threads"]) > 1:
        lo = res["threads"][0]
        for name in ("mnist", "wide"):
            out.append((f"scaling {name}: {top} ÷ {lo} threads",
                        ratio(name, "native", "native", top, lo), 1.8))
    return out


PEAK_TARGETS = (("mnist", "MNIST-shaped"), ("wide", "wide"))  # workloads with a % of peak goal


def targets_table(res: dict) -> str:
    top = res["threads"][-1]
    peak = res["peak"][top]
    # The % of peak targets beside what the same products alone reach through OpenBLAS.
    ceilings = {f"{label}: % of sgemm peak": w["products"]["gflops"] / peak
                for name, label in PEAK_TARGETS for w in res["workloads"]
                if w["name"] == name and "gflops" in w.get("products", {})}
    # ... and beside the sgemm rate timed in the same interleaved repeats.
    interleaved = {f"{label}: % of sgemm peak": fraction_of_interleaved_sgemm(w, top)
                   for name, label in PEAK_TARGETS for w in res["workloads"] if w["name"] == name}
    # The FANN targets beside deltaprop with samples in order, as FANN visits them.
    in_order = {}
    for name, label in (("seed-online", "seed 2-3-1 online"), ("online-64", "64-128-64-10 online")):
        w = next((w for w in res["workloads"] if w["name"] == name), None)
        ra = _row(w["rows"], "native_in_order", top) if w else None
        rb = _row(w["rows"], "fann", top) if w else None
        if ra and rb:
            in_order[f"{label}: × FANN"] = ra["median"] / rb["median"]
    # The scaling targets beside how the NumPy/OpenBLAS loop and the same products alone scale,
    # and how far apart the cores were.
    trips, numpy_loop = {}, {}
    if len(res["threads"]) > 1:
        for w in res["workloads"]:
            what = f"scaling {w['name']}: {top} ÷ {res['threads'][0]} threads"
            scaling = products_scaling(w, res["threads"])
            if scaling:
                ceilings[what] = scaling
            numpy_loop[what] = peer_scaling(w, "numpy", res["threads"])
            trips[what] = round_trip(w)
    # ... and the same targets from the repeats timed with the CPUs near, and far apart.
    placed = {p: {what: value for what, value, _ in targets(res, p)} for p in ("near", "far")}
    lines = ["| target | goal | measured | status |", "| --- | ---: | ---: | --- |"]
    for what, value, goal in targets(res):
        pct = what.startswith(("MNIST-shaped: %", "wide: %"))
        fmt = (lambda v: f"{100 * v:.1f}%") if pct else _ratio
        if value is None:
            lines.append(f"| {what} | {fmt(goal)} | — | not measured |")
            continue
        status = "met" if value >= goal else f"**missed** ({value / goal:.2f} of goal)"
        if interleaved.get(what) is not None:
            status += ("; against NumPy's 2048² sgemm timed in the same interleaved repeats: "
                       f"{fmt(interleaved[what])}")
        if numpy_loop.get(what):
            status += f"; the NumPy/OpenBLAS loop: {fmt(numpy_loop[what])}"
        if what in ceilings:
            status += f"; the step's GEMMs alone through OpenBLAS: {fmt(ceilings[what])}"
        if trips.get(what):
            status += f"; a cache line's round trip between the CPUs meanwhile: {trips[what]}"
        near, far = placed["near"].get(what), placed["far"].get(what)
        if near is not None and far is not None:
            status += (f"; from the repeats with the CPUs near (round trip < {NEAR_NS:.0f} ns) "
                       f"alone: {fmt(near)}, far apart: {fmt(far)}")
        if what in in_order:
            status += f"; with samples in order, as FANN takes them: {fmt(in_order[what])}"
        lines.append(f"| {what} | ≥ {fmt(goal)} | {fmt(value)} | {status} |")
    return "\n".join(lines) + "\n"


def full_report(res: dict) -> str:
    top = res["threads"][-1]
    parts = ["## Machine", "", machine_text(res), "",
             "sgemm peak (NumPy 2048² float32 matmul, best of several): " + ", ".join(
                 f"{res['peak'][t]:.1f} GFLOP/s at {t} thread{'s' * (t > 1)}"
                 for t in res["threads"]), "",
             "## Targets of issue 3", "", targets_table(res),
             f"## Training throughput ({top} threads)", "",
             f"Median of {res['reps']} interleaved repeats, each ≈{res['unit_seconds']} s of "
             "training; spread is the slowest and fastest repeat against the median. "
             "GFLOP/s counts the FLOPs of the products a step runs: 2·n_(l-1)·n_l a sample "
             "for each layer's forward and gradient product and for each delta but the inputs' "
             "(2·Σ n_(l-1)·n_l per predicted sample). 'native ÷ entry' > 1 means deltaprop "
             "(the `fit` path users call; `predict_proba` for mnist-predict) is faster.", ""]
    parts += [workload_table(w, res["peak"][top], top) for w in res["workloads"]]
    if len(res["threads"]) > 1:
        parts += ["## Thread scaling (deltaprop native, `fit`)", "", scaling_table(res)]
    if res.get("sweep"):
        parts += ["## Throughput against layer width (784-w-w-10 relu, batch 128)", "",
                  sweep_table(res)]
    if res.get("gemm"):
        parts += [f"## GEMM alone ({top} threads)", "",
                  "`deltaprop._native.forward_layer(A, W, None, 'identity', 0.0)` against "
                  "`A @ W`, float32, both allocating their output; GFLOP/s from the median "
                  "of many calls. The two alternate in short rounds; the ratio is the median "
                  "of the rounds' ratios, and the spread their lowest and highest.", "",
                  gemm_table(res)]
    return "\n".join(parts)


def machine_text(res: dict) -> str:
    m = res["meta"]
    ci = m["cpu_info"]
    blas = "; ".join(f"{b.get('internal_api')} {b.get('version')} ({b.get('architecture')}, "
                     f"{b.get('threading_layer')})" for b in (m.get("numpy_blas") or []))
    removed = res.get("blas_env_removed") or {}
    env = (", ".join(f"{k}={v}" for k, v in removed.items()) + " were set and removed for all "
           "peers") if removed else "OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE not set"
    return "\n".join([
        f"- CPU: {m['cpu']}, {m['cores']} cores; deltaprop ISA in use: **{ci.get('isa')}** "
        f"(f32 GEMM kernel {ci.get('gemm_kernel_f32')}; supported {ci.get('isas_supported')})",
        f"- deltaprop {m['deltaprop']} at commit {m['commit']}; compiler {ci.get('compiler')}",
        f"- Python {m['python']}, NumPy {m['numpy']} with {blas or 'unknown BLAS'}; {env}",
        f"- PyTorch {m.get('torch') or 'not installed'}, scikit-learn "
        f"{m.get('sklearn') or 'not installed'}, FANN (libfann-dev) "
        f"{m.get('fann') or 'not installed'}",
        f"- measured {m['date']}{' (--quick)' if res['quick'] else ''}, "
        f"run took {res.get('wall_seconds', 0):.0f} s, of which "
        f"{res.get('quiet_wait_seconds', 0):.0f} s waiting for the machine to be quiet; "
        f"{res.get('disturbed_repeats_discarded', 0)} timed calls disturbed by other processes "
        "were discarded and repeated"])


def sweep_table(res: dict) -> str:
    peers = [p for p in NAMES if any(_row(w["rows"], p) for w in res["sweep"])]
    lines = ["| width | " + " | ".join(NAMES[p] + " samples/s" for p in peers) + " |",
             "| ---: |" + " ---: |" * len(peers)]
    for w in res["sweep"]:
        cells = [(_si(r["median"]) if (r := _row(w["rows"], p)) else "—") for p in peers]
        lines.append(f"| {w['width']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(res: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for peer, name in NAMES.items():
        pts = [(w["width"], r["median"]) for w in res["sweep"] if (r := _row(w["rows"], peer))]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("hidden width w (784-w-w-10, relu, cross-entropy, batch 128)")
    ax.set_ylabel("training samples/s (median)")
    ax.set_title(f"{res['meta']['cpu']}, {res['threads'][-1]} threads, float32")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_results(res: dict, text: str, path: Path, plot_name: str) -> None:
    head = ["# deltaprop benchmark results", "",
            "Regenerated by `python bench/run.py --write-results` (see bench/README.md); "
            "do not edit by hand. Raw numbers: `bench/results.json`.", ""]
    body = text
    if res.get("sweep"):
        body += f"\n![throughput against layer width]({plot_name})\n"
    path.write_text("\n".join(head) + body)

