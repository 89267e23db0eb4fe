"""A process that runs fuzz cases for its parent: one JSON case per line on stdin, one JSON
answer per line on stdout (``{"ok": true}`` or ``{"ok": false, "error": ...}``).

A segfault or abort kills only this process; the parent sees its stdout close and reports
the case that did it. Run as ``python -m fuzz.worker`` with ``tests/`` on ``sys.path``.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import traceback

from .execute import run_case

# Allocations beyond this fail (MemoryError) instead of swapping the machine to death: a
# fuzzed size can be a legitimate request for terabytes.
ADDRESS_SPACE = 8 << 30


def main() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
    for line in sys.stdin:
        case = json.loads(line)
        if case["kind"] == "abort":  # lets the parent's tests prove a crash is reported
            os.abort()
        try:
            run_case(case)
            answer = {"ok": True}
        except AssertionError as exc:  # a Violation, or a failed comparison of results
            lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
            answer = {"ok": False, "error": "".join(lines)}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
