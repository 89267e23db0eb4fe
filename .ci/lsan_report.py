"""Read LeakSanitizer's report (stderr of a run under .ci/sanitize) and fail on deltaprop's leaks.

The interpreter is not instrumented and, like every CPython, leaves objects allocated at exit;
those reports are counted and ignored. A leak whose allocation stack passes through our own
sources (``csrc/``: bindings, network, kernels) is printed and fails the check. pybind11's
internals, which it allocates once and never frees by design, are suppressed by name in
``.ci/lsan.supp``.

    python .ci/lsan_report.py REPORT
"""

from __future__ import annotations

import re
import sys

BLOCK = re.compile(r"^(Direct|Indirect) leak of (\d+) byte\(s\) in (\d+) object\(s\) "
                   r"allocated from:\n((?:    #.*\n?)*)", re.M)


def main(path: str) -> int:
    text = open(path, errors="replace").read()
    ours, others = [], 0
    for match in BLOCK.finditer(text):
        if "/csrc/" in match.group(4):
            ours.append(match.group(0))
        else:
            others += 1
    checked = "LeakSanitizer" in text or "leak" not in text
    print(f"lsan: {len(ours)} leak(s) allocated by deltaprop's code, {others} by the "
          "interpreter and other libraries (ignored)")
    for block in ours:
        print(block)
    return 1 if ours or not checked else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
