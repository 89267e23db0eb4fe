"""Hypothesis fuzzing of the public API: random shapes, dtypes and values, each case run in a
worker process so that a segfault or abort is a test failure, not the end of pytest.

The cases (``tests/fuzz/cases.py``) cover MLP construction and every method, ``dp.ops`` on
both backends, ``dp.load`` on damaged files and ``deltaprop._native`` called directly
(``tests/fuzz/native_calls.py``); ``tests/fuzz/execute.py`` checks that each call
succeeds with sane, backend-consistent results or raises a documented exception and leaves the
network unchanged. ``.ci/fuzz`` drives the same cases, coverage-guided, for longer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from typing import Any, Callable

import pytest
from fuzz import cases, native_calls
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

TESTS = os.path.dirname(os.path.abspath(__file__))


class WorkerCrashed(AssertionError):
    pass


class Worker:
    """A ``python -m fuzz.worker`` process, restarted after a crash."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self.stderr = tempfile.TemporaryFile()

    def start(self) -> subprocess.Popen:
        env = {**os.environ, "PYTHONPATH": TESTS + os.pathsep + os.environ.get("PYTHONPATH", ""),
               "OMP_NUM_THREADS": "2"}
        self.stderr.seek(0)
        self.stderr.truncate()
        return subprocess.Popen([sys.executable, "-m", "fuzz.worker"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=self.stderr, env=env, text=True)

    def run(self, case: dict) -> dict:
        if self.process is None or self.process.poll() is not None:
            self.process = self.start()
        line = json.dumps(case)
        try:
            self.process.stdin.write(line + "\n")
            self.process.stdin.flush()
            answer = self.process.stdout.readline()
        except (BrokenPipeError, OSError):
            answer = ""
        if answer:
            return json.loads(answer)
        code = self.process.wait()
        self.process.stdin.close()
        self.process.stdout.close()
        self.stderr.seek(0)
        tail = self.stderr.read().decode(errors="replace")[-4000:]
        self.process = None
        raise WorkerCrashed(f"the worker died (exit {code}) on case {line}\n{tail}")

    def close(self) -> None:
        if self.process is not None:
            self.process.stdin.close()
            self.process.wait()
            self.process.stdout.close()
        self.stderr.close()


@pytest.fixture(scope="module")
def worker() -> Iterator[Worker]:
    w = Worker()
    yield w
    w.close()


class HypothesisSource:
    def __init__(self, data: Any) -> None:
        self.data = data

    def integer(self, low: int, high: int) -> int:
        return self.data.draw(st.integers(low, high))

    def real(self) -> float:
        return self.data.draw(st.floats())


def check(worker: Worker, draw: Callable[[Any], dict], data: Any) -> None:
    case = draw(HypothesisSource(data))
    answer = worker.run(case)
    assert answer["ok"], f"{answer['error']}\ncase: {json.dumps(case)}"


def fuzz(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@fuzz(150)
@given(data=st.data())
def test_mlp_calls_succeed_or_raise_documented_errors(worker: Worker, data: Any) -> None:
    check(worker, cases.draw_mlp_case, data)


@fuzz(150)
@given(data=st.data())
def test_ops_agree_across_backends_or_raise_documented_errors(worker: Worker,
                                                              data: Any) -> None:
    check(worker, cases.draw_ops_case, data)


@fuzz(60)
@given(data=st.data())
def test_load_of_damaged_files_raises_documented_errors(worker: Worker, data: Any) -> None:
    check(worker, cases.draw_load_case, data)


@fuzz(150)
@given(data=st.data())
def test_native_module_calls_succeed_or_raise_documented_errors(worker: Worker,
                                                                data: Any) -> None:
    check(worker, native_calls.draw_native_case, data)


def test_a_crashing_case_is_reported_and_the_worker_restarts(worker: Worker) -> None:
    with pytest.raises(WorkerCrashed, match=r"died \(exit -6\)"):
        worker.run({"kind": "abort"})
    assert worker.run({"kind": "load", "noise": []}) == {"ok": True}
