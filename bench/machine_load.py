"""How busy the rest of the machine is, from /proc: run.py times a unit only when it is quiet.

A 2-core development machine is shared with compilers and test runs. A 2-thread OpenMP region
that loses one core to another process does not get 50% slower, it stalls at every barrier, so
one compile burst can turn a repeat into garbage. Every timed call is therefore preceded by a
wait for a quiet moment and followed by a check of how much CPU *other* processes used while it
ran (all CPU time on the machine minus the worker's own, children included); a repeat disturbed
by more than a tenth of a core is thrown away and measured again. On a machine without /proc the
checks are skipped.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
HAVE_PROC = Path("/proc/stat").exists()


def machine_busy_ticks() -> int:
    """CPU ticks spent not idle on all cores (steal counts: another VM took the core)."""
    if not HAVE_PROC:
        return 0
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = f[:8]
    return user + nice + system + irq + softirq + steal


def process_ticks(pid: int) -> int:
    """CPU ticks of process ``pid``, all its threads and its waited-for children."""
    if not HAVE_PROC:
        return 0
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = stat.rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime


class LoadGuard:
    """Counts foreign CPU time around timed calls; see the module docstring."""

    def __init__(self, max_wait_s: float, budget_s: float, threshold_cores: float = 0.1):
        # budget_s caps the waiting of a whole run: on a machine that never gets quiet the
        # benchmark still finishes, and the report says how many repeats were disturbed.
        self.max_wait_s = max_wait_s
        self.budget_s = budget_s
        self.threshold = threshold_cores
        self.waited_s = 0.0
        self.discarded = 0

    def wait_quiet(self, settle_s: float = 0.2) -> bool:
        """Sleep ``settle_s`` (previous peer's spinning threads fall asleep meanwhile), then
        until other processes use under the threshold, at most ``max_wait_s``."""
        t_end = time.perf_counter() + self.max_wait_s
        while True:
            b0, t0 = machine_busy_ticks(), time.perf_counter()
            time.sleep(settle_s)
            dt = time.perf_counter() - t0
            self.waited_s += dt
            if not HAVE_PROC or machine_busy_ticks() - b0 <= self.allowed(dt):
                return True
            if time.perf_counter() > t_end or self.waited_s > self.budget_s:
                return False

    def allowed(self, seconds: float) -> float:
        # one tick of slack for the granularity of the counters
        return 1 + self.threshold * seconds * HZ

    def start(self, pid: int) -> tuple[int, int, float]:
        return machine_busy_ticks(), process_ticks(pid), time.perf_counter()

    @property
    def patient(self) -> bool:
        """Still worth repeating a disturbed call (the waiting budget is not spent)?"""
        return self.waited_s <= self.budget_s

    def disturbed(self, pid: int, mark: tuple[int, int, float]) -> bool:
        """Did other processes use more than the threshold since ``mark``?"""
        if not HAVE_PROC:
            return False
        b0, p0, t0 = mark
        foreign = (machine_busy_ticks() - b0) - (process_ticks(pid) - p0)
        if foreign > self.allowed(time.perf_counter() - t0):
            self.discarded += 1
            return True
        return False
