"""Read LeakSanitizer's report (stderr of a run under .ci/sanitize) and fail on deltaprop's leaks.

The interpreter is not instrumented and, like every CPython, leaves objects allocated at exit;
those reports are counted and ignored. A leak whose allocation stack passes through our own
code — a frame in a ``csrc/`` source, or a function of namespace ``deltaprop`` (frames of the
module are not always symbolized with a file) — is printed and fails the check.

    python .ci/lsan_report.py REPORT
"""

from __future__ import annotations

import re
import sys

BLOCK = re.compile(r"^(Direct|Indirect) leak of (\d+) byte\(s\) in (\d+) object\(s\) "
                   r"allocated from:\n((?:    #.*\n?)*)", re.M)
OUR_FUNCTION = re.compile(r"^    #\d+ 0x[0-9a-f]+ in deltaprop::", re.M)


def main(path: str) -> int:
    text = open(path, errors="replace").read()
    ours, others = [], 0
    for match in BLOCK.finditer(text):
        if "/csrc/" in match.group(4) or OUR_FUNCTION.search(match.group(4)):
            ours.append(match.group(0))
        else:
            others += 1
    print(f"lsan: {len(ours)} leak(s) allocated by deltaprop's code, {others} by the "
          "interpreter and other libraries (ignored)")
    for block in ours:
        print(block)
    return 1 if ours else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
