"""What the compiler kept of the native module's performance work, read back from its code.

Both defects here left every result the same and only the speed different, and were seen only in
the module's disassembly:

- A loop whose body is only __builtin_prefetch has no side effect to GCC, which may assume it
  ends (-ffinite-loops) and delete it: GCC 12 at -O3 deleted the gather's requests for its rows
  into L2, so the module held no PREFETCHT1 at all while its comments described them.
  prefetch.hpp now issues each request as an instruction the compiler must keep.
- The baseline copy of the GEMM's element loops (the epilogues, run on DELTAPROP_ISA=generic and
  on CPUs without AVX2) worked on 32-byte vectors, two SSE2 registers each, and GCC compared and
  selected them lane by lane: 336 of the 377 compares of the float epilogue were scalar. Its
  vectors are 16 bytes now, SSE2's own.
"""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
from collections import defaultdict

import pytest

from deltaprop import _native

pytestmark = [
    pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"),
                       reason="reads x86 instructions (PREFETCHT1, SSE2 compares)"),
    pytest.mark.skipif(shutil.which("objdump") is None,
                       reason="needs objdump (binutils) to read the module's instructions"),
]


@pytest.fixture(scope="module")
def listing() -> str:
    return subprocess.run(["objdump", "-d", "-C", "--no-show-raw-insn", _native.__file__],
                          capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def functions(listing) -> dict[str, list[str]]:
    """Each function's instructions, by its demangled signature."""
    bodies: dict[str, list[str]] = defaultdict(list)
    current = None
    for line in listing.splitlines():
        header = re.match(r"^[0-9a-f]+ <(.*)>:$", line)
        if header:
            current = header.group(1)
        elif current is not None and "\t" in line:
            bodies[current].append(line.split("\t", 1)[1].strip())
    return bodies


def instructions_of(functions: dict[str, list[str]], name: str) -> list[str]:
    """The instructions of the function named ``name`` (its cold part left out)."""
    found = [body for signature, body in functions.items()
             if re.search(r"\b" + re.escape(name) + r"\(", signature) and "[clone" not in signature]
    if not found:
        pytest.skip(f"no symbol for {name}: the module was stripped (pyproject.toml keeps its "
                    "symbols; a packager may not)")
    return [instruction for body in found for instruction in body]


def test_the_gather_asks_for_its_rows_into_l2(listing):
    assert listing.count("prefetcht1") >= 4  # the gather's X and T rows, for float and double


@pytest.mark.parametrize("dtype, suffix", [("float", "s"), ("double", "d")])
def test_the_baseline_epilogue_compares_whole_vectors(functions, dtype, suffix):
    code = instructions_of(functions, f"finish_tile_generic<{dtype}>")
    # CMPPS/CMPPD (and their predicate forms: cmpltps, cmpnleps, ...) against CMPSS/CMPSD.
    packed = sum(bool(re.match(rf"cmp\w*p{suffix}\b", op)) for op in code)
    scalar = sum(bool(re.match(rf"cmp\w*s{suffix}\b", op)) for op in code)
    # The scalar ones left are the short rows' last lanes (a 10-wide row is two vectors and two
    # lanes); with vectors wider than SSE2's registers scalar compares outnumbered packed 8 to 1.
    assert packed > 4 * scalar, (packed, scalar)
