"""The native module keeps the prefetches the epoch loop's batch gather asks for its rows with.

A loop whose body is only __builtin_prefetch has no side effect to GCC, which may assume it ends
(-ffinite-loops) and delete it: GCC 12 at -O3 deleted the gather's requests for its rows into L2,
so the built module held no PREFETCHT1 at all while its comments described them. prefetch.hpp now
issues each request as an instruction the compiler must keep; this test reads the compiled module
back, as only its disassembly can show what the compiler kept.
"""

from __future__ import annotations

import platform
import shutil
import subprocess

import pytest

from deltaprop import _native


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"),
                    reason="PREFETCHT1 is an x86 instruction; elsewhere __builtin_prefetch asks")
@pytest.mark.skipif(shutil.which("objdump") is None, reason="needs objdump (binutils) to read "
                    "the module's instructions")
def test_the_gather_asks_for_its_rows_into_l2():
    listing = subprocess.run(["objdump", "-d", "--no-show-raw-insn", _native.__file__],
                             capture_output=True, text=True, check=True).stdout
    assert listing.count("prefetcht1") >= 4  # the gather's X and T rows, for float and double
