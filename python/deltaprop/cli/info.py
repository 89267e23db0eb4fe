"""``deltaprop info``: what this installation is and what its native runtime uses."""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys

from .. import __version__, _native, cpu_info, get_num_threads

# The _OPENMP macro is the release date of the specification the compiler implements.
_OPENMP_VERSIONS = {200505: "2.5", 200805: "3.0", 201107: "3.1", 201307: "4.0", 201511: "4.5",
                    201811: "5.0", 202011: "5.1", 202111: "5.2", 202411: "6.0"}

_OPENMP_LIBRARIES = re.compile(r"lib(gomp|omp|iomp5|vcomp)[^/\\]*$")


def openmp_runtime() -> str:
    """The OpenMP library loaded into this process (Linux: from /proc/self/maps)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "/" in line}
    except OSError:  # not Linux: the library cannot be found this cheaply
        return "unknown on this platform"
    found = sorted(p for p in paths if _OPENMP_LIBRARIES.search(os.path.basename(p)))
    return ", ".join(found) if found else "none loaded (serial build)"


def details() -> dict:
    """Everything ``info`` prints, as a dict (the tests read it)."""
    native = cpu_info()
    openmp = native.pop("openmp", None)
    threads = native.pop("threads", get_num_threads())
    info = {"version": __version__,
            "python": f"{platform.python_implementation()} {platform.python_version()}",
            "platform": platform.platform(),
            "native module": _native.__file__,
            "isa": native.pop("isa", "?"),
            "isas supported": ", ".join(native.pop("isas_supported", [])),
            "threads": threads,
            "openmp": ("not compiled in" if openmp is None
                       else f"{_OPENMP_VERSIONS.get(openmp, '?')} (_OPENMP {openmp})"),
            "openmp runtime": openmp_runtime(),
            "compiler": native.pop("compiler", "?")}
    info.update(native)  # whatever else the build reports (kernel tiles, build flags)
    info["isa override"] = os.environ.get("DELTAPROP_ISA", "(DELTAPROP_ISA not set)")
    info["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS", "(not set)")
    return info


def info(args: argparse.Namespace) -> int:
    """Print the version and what the native runtime uses."""
    values = details()
    print(f"deltaprop {values.pop('version')}")
    width = max(map(len, values)) + 1
    for key, value in values.items():
        print(f"{key + ':':<{width}} {value}")
    sys.stdout.flush()
    return 0
