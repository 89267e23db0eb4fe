"""bench/run.py's calibration of a timed unit (no peer is started: the unit is simulated)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from run import calibrate_unit  # noqa: E402


def simulated(rate: float, calls: list):
    """A peer training `rate` samples/s; refuses to be asked more than 100 times."""
    def unit(n: int, epochs: int) -> dict:
        calls.append((n, epochs))
        assert len(calls) < 100, "calibration does not converge"
        return {"seconds": n * epochs / rate}
    return unit


@pytest.mark.parametrize("samples, batch", [(1797 * 20, 32), (16384, 128), (200_000, 1),
                                            (1000, 256)])
@pytest.mark.parametrize("rate", [1e3, 1e6, 1e8])
def test_a_unit_lasts_about_the_target(samples: int, batch: int, rate: float) -> None:
    calls: list = []
    n, epochs = calibrate_unit(simulated(rate, calls), samples, batch, 0.5)
    assert n % batch == 0 and batch <= n <= samples
    assert all(c[0] % batch == 0 and c[0] <= samples for c in calls)
    if n * epochs >= 2 * batch:  # not a single batch too slow to split
        assert 0.25 <= n * epochs / rate <= 1.0


def test_an_error_answer_is_returned() -> None:
    assert calibrate_unit(lambda n, epochs: {"error": "boom"}, 1000, 10, 0.5) == {"error": "boom"}
