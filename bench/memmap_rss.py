"""Peak memory of training from a memory-mapped file, against the file's size.

    python bench/memmap_rss.py [--mib 512] [--features 512] [--epochs 1]

Writes a float32 and a float64 ``.npy`` of about ``--mib`` MiB each to a temporary directory and
trains ``MLP([features, 64, 2])`` (float32) on each through ``np.load(..., mmap_mode="r")``, in a
fresh process per file, then prints one line per file. The float32 file is read in place by the
native loop (zero-copy); the float64 one is gathered and converted a chunk of batches at a time.

Two peaks are reported. Peak RSS (``ru_maxrss``) counts the file's pages mapped in while reading
it; the kernel drops those clean pages whenever memory is short, so they are cache, not a cost.
Peak anonymous memory (``RssAnon``, sampled every 5 ms) is what the process really holds — the
number that must stay bounded, and does, whatever the file's size.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

CHILD = r"""
import resource, sys, threading, time
import numpy as np
import deltaprop as dp

def anon_kib():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("RssAnon:"))

path, epochs = sys.argv[1], int(sys.argv[2])
X = np.load(path, mmap_mode="r")
y = np.arange(X.shape[0]) % 2
net = dp.MLP([X.shape[1], 64, 2], seed=0)
net.fit(X[:512], y[:512], epochs=1)  # threads and buffers exist before the baseline
base = anon_kib()
peak = [base]
done = threading.Event()

def sample():
    while not done.wait(0.005):
        peak[0] = max(peak[0], anon_kib())

thread = threading.Thread(target=sample)
thread.start()
start = time.perf_counter()
hist = net.fit(X, y, epochs=epochs, batch_size=256)
seconds = time.perf_counter() - start
done.set()
thread.join()
max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
print(f"{X.dtype} file {X.nbytes / 2**20:.0f} MiB, {seconds:.2f} s, "
      f"{hist.samples_per_second[-1] / 1e3:.0f}k samples/s: peak RSS {max_rss / 1024:.0f} MiB, "
      f"peak anonymous {peak[0] / 1024:.0f} MiB (+{(peak[0] - base) / 1024:.0f} MiB while "
      f"training)")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=512, help="size of each file in MiB")
    parser.add_argument("--features", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in (np.float32, np.float64):
            itemsize = np.dtype(dtype).itemsize
            rows = max(1024, (args.mib << 20) // (args.features * itemsize))
            path = Path(tmp) / f"X_{np.dtype(dtype).name}.npy"
            mm = np.lib.format.open_memmap(path, mode="w+", dtype=dtype,
                                           shape=(rows, args.features))
            block = np.random.default_rng(0).normal(size=(1024, args.features)).astype(dtype)
            for lo in range(0, rows, 1024):
                mm[lo:lo + 1024] = block[:rows - lo]
            mm.flush()
            del mm
            mode = "zero-copy" if dtype == np.float32 else "chunked"
            out = subprocess.run([sys.executable, "-c", CHILD, str(path), str(args.epochs)],
                                 capture_output=True, text=True, check=True)
            print(f"memmap_rss {mode:9s} {out.stdout.strip()}")
            path.unlink()


if __name__ == "__main__":
    main()
