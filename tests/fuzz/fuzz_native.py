"""Coverage-guided fuzzing with atheris (libFuzzer): the cases of ``cases.py`` and
``native_calls.py``, drawn from libFuzzer's mutated bytes and run in this process.

``.ci/fuzz`` builds ``deltaprop._native`` with clang's ``-fsanitize=address,fuzzer-no-link``, so
libFuzzer sees the C++ branches (and atheris the Python ones of deltaprop) and AddressSanitizer
turns a stray access into a crash. Run as ``python -m fuzz.fuzz_native [libFuzzer flags]``
with ``tests/`` on ``sys.path``; a crash, a :class:`~fuzz.execute.Violation` or any
undocumented exception ends the run with a non-zero status and the input that did it.
"""

from __future__ import annotations

import sys

import atheris
import numpy  # noqa: F401  (imported before instrumentation: NumPy's code is not ours to cover)

with atheris.instrument_imports(include=["deltaprop", "fuzz"]):
    from fuzz import cases, native_calls
    from fuzz.execute import run_case


class BytesSource:
    """A :class:`fuzz.cases.Source` reading libFuzzer's bytes."""

    def __init__(self, data: bytes) -> None:
        self.provider = atheris.FuzzedDataProvider(data)

    def integer(self, low: int, high: int) -> int:
        return self.provider.ConsumeIntInRange(low, high)

    def real(self) -> float:
        return self.provider.ConsumeFloat()


def test_one_input(data: bytes) -> None:
    src = BytesSource(data)
    draw = native_calls.draw_native_case if src.integer(0, 1) else cases.draw_case
    run_case(draw(src))


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
