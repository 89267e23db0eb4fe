"""bench/report.py's GEMM-alone ratios (the median of alternating rounds where a run has them) and
the core-to-core probe beside the scaling targets; bench/core_to_core.c itself."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import peers  # noqa: E402
import report  # noqa: E402


def gemm_results(rows: list[dict]) -> dict:
    return {"threads": [2], "peak": {2: 100.0}, "workloads": [], "gemm": rows}


def gemm_targets(rows: list[dict]) -> dict[str, float]:
    return {what: value for what, value, _ in report.targets(gemm_results(rows))}


def test_gemm_targets_take_the_median_of_the_rounds_ratios() -> None:
    # Pooled medians 50 against 100 GFLOP/s (0.5x), but round by round deltaprop was level:
    # the pooled medians mix the machine's slow seconds into one side only.
    rows = [{"kind": "square", "shape": [512] * 3, "native": 50.0, "numpy": 100.0,
             "ratio": 1.02, "ratio_spread": [0.97, 1.1]},
            {"kind": "training", "shape": [32, 64, 10], "native": 9.0, "numpy": 10.0,
             "ratio": 0.9, "ratio_spread": [0.8, 1.0]}]
    got = gemm_targets(rows)
    assert got["GEMM 512²–2048²: worst × NumPy"] == 1.02
    assert got["GEMM training shapes: worst × NumPy"] == 0.9
    rows[0]["round_trip_ns"] = 412.4
    table = report.gemm_table(gemm_results(rows))
    assert "| 1.02× | 0.97–1.10 | 412 ns |" in table and "| 0.90× | 0.80–1.00 | — |" in table


def test_results_without_rounds_fall_back_to_the_pooled_medians() -> None:
    rows = [{"kind": "square", "shape": [1024] * 3, "native": 80.0, "numpy": 100.0},
            {"kind": "square", "shape": [64] * 3, "native": 10.0, "numpy": 100.0},  # < 512²
            {"kind": "training", "shape": [128, 128, 10], "native": 30.0, "numpy": 20.0}]
    got = gemm_targets(rows)
    assert got["GEMM 512²–2048²: worst × NumPy"] == 0.8
    assert got["GEMM training shapes: worst × NumPy"] == 1.5
    assert "| 0.80× | — | — |" in report.gemm_table(gemm_results(rows))


def scaling_results(probe: dict) -> dict:
    rows = [{"peer": peer, "threads": t, "median": rate, "gflops": 1.0}
            for peer, t, rate in (("native", 1, 100.0), ("native", 2, 150.0),
                                  ("numpy", 1, 40.0), ("numpy", 2, 50.0))]
    return {"threads": [1, 2], "peak": {1: 50.0, 2: 100.0},
            "workloads": [{"name": "mnist", "rows": rows, "digests": {1: "a", 2: "a"},
                           "core_to_core": probe}]}


def test_the_scaling_rows_say_how_far_apart_the_cores_were_and_how_the_numpy_loop_scaled() -> None:
    res = scaling_results({"ns": [75.0, 76.0, 80.0, 450.0, 3100.0]})
    assert ("| mnist | 100 | 150 | 1.50× | 1.25× | — | yes | 80 ns (75–3,100) |"
            in report.scaling_table(res))
    status = next(line for line in report.targets_table(res).splitlines()
                  if "scaling mnist" in line)
    assert "round trip between the CPUs meanwhile: 80 ns (75–3,100)" in status
    assert "the NumPy/OpenBLAS loop: 1.25×" in status
    # A run without the probe (one CPU, or results from before it) says nothing of it.
    assert report.scaling_table(scaling_results({})).splitlines()[-1].endswith("| yes | — |")


@pytest.mark.skipif(peers.cpus_allowed() < 2, reason="the probe needs two CPUs")
def test_the_core_to_core_probe_times_round_trips() -> None:
    probe = peers.CoreToCore(None, True, 2)
    seconds = probe.unit(2000, 1)
    assert 2000 * 10e-9 < seconds < 2000 * 1e-3  # 10 ns to 1 ms a round trip


def placed_results() -> dict:
    """Two-thread repeats timed with the CPUs near (55 ns) and far apart (330 ns), each beside
    the probe of its own repeat; the one-thread rows have no probe."""
    trips = [55.0, 330.0, 55.0, 330.0, 330.0]
    rows = [{"peer": "native", "threads": 2, "rates": [190.0, 140.0, 186.0, 150.0, 145.0],
             "round_trips": trips},
            {"peer": "numpy", "threads": 2, "rates": [60.0, 40.0, 62.0, 50.0, 44.0],
             "round_trips": trips},
            {"peer": "native", "threads": 1, "rates": [100.0] * 5, "round_trips": []}]
    for r in rows:
        r["median"] = sorted(r["rates"])[2]
        r["gflops"] = r["median"] / 100.0  # a sample: 10 MFLOP
    return {"threads": [1, 2], "peak": {1: 1.0, 2: 2.0},
            "workloads": [{"name": "mnist", "label": "mnist", "flops_per_sample": 10_000_000,
                           "rows": rows, "core_to_core": {"ns": sorted(trips)}}]}


def test_the_training_targets_are_also_given_for_the_repeats_near_and_far_alone() -> None:
    res = placed_results()
    near = {what: v for what, v, _ in report.targets(res, "near")}
    far = {what: v for what, v, _ in report.targets(res, "far")}
    assert near["MNIST-shaped: % of sgemm peak"] == pytest.approx(1.88 / 2.0)  # median 188
    assert far["MNIST-shaped: % of sgemm peak"] == pytest.approx(1.45 / 2.0)
    assert near["scaling mnist: 2 ÷ 1 threads"] == pytest.approx(1.88)  # over all 1-thread repeats
    assert far["scaling mnist: 2 ÷ 1 threads"] == pytest.approx(1.45)
    assert near["MNIST-shaped: × PyTorch eager"] is None  # no such peer here
    status = next(line for line in report.targets_table(res).splitlines()
                  if line.startswith("| MNIST-shaped: %"))
    assert "| 75.0% | **missed**" in status  # the target itself: the median of all repeats
    assert "near (round trip < 150 ns) alone: 94.0%, far apart: 72.5%" in status
    table = report.workload_table(res["workloads"][0], 2.0, 2)
    assert ("Of deltaprop native's 5 repeats, 2 ran with the CPUs near (188 samples/s) and 3 "
            "ran with the CPUs far apart (145 samples/s)") in table
    # All repeats in one placement: nothing to split, so neither says anything of it.
    for r in res["workloads"][0]["rows"]:
        r["round_trips"] = [330.0] * len(r["round_trips"])
    assert "alone:" not in report.targets_table(res)
    assert "ran with the CPUs" not in report.workload_table(res["workloads"][0], 2.0, 2)
