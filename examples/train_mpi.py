"""Train one network on many processes with MPI; the result equals a single-process run.

    python examples/train_mpi.py                  # one process
    mpiexec -n 4 python examples/train_mpi.py     # four ranks, same weights (to ~1e-15)

Every rank runs this whole script. The data set is written once to a .npy file and memory
mapped, so each rank reads only the rows it trains on. Rank 0 prints the result; the last line
is a checksum of the final weights, which is the same for any number of ranks.
"""

from __future__ import annotations

import os
import sys

import numpy as np

import deltaprop as dp

try:
    from mpi4py import MPI
except ImportError:  # without mpi4py this is plain single-process training
    MPI = None

# One process trains the ordinary way (the whole epoch loop in C++): the reference result.
comm = MPI.COMM_WORLD if MPI is not None and MPI.COMM_WORLD.Get_size() > 1 else None
rank = comm.Get_rank() if comm is not None else 0
size = comm.Get_size() if comm is not None else 1

# A synthetic 10-class problem: 20,000 samples of 64 features, a random linear teacher.
path = sys.argv[1] if len(sys.argv) > 1 else "train_mpi_data.npy"
if rank == 0 and not os.path.exists(path):
    rng = np.random.default_rng(0)
    np.save(path, rng.normal(size=(20_000, 64)))
if comm is not None:
    comm.Barrier()  # the file exists before any rank maps it
X = np.load(path, mmap_mode="r")
teacher = np.random.default_rng(1).normal(size=(64, 10))
y = np.argmax(X @ teacher, axis=1)  # every rank computes the same labels

# float64 so that the ranks' result matches the single process to ~1e-15; float32 works too.
net = dp.MLP([64, 128, 64, 10], activation="relu", dtype="float64", seed=0)
history = net.fit(X, y, epochs=5, batch_size=256, optimizer=dp.Adam(lr=1e-3), comm=comm)

if rank == 0:
    W, b = net.get_weights()
    flat = np.concatenate([a.ravel() for a in W + b])
    print(f"{size} process(es): loss per epoch {[round(v, 6) for v in history.loss]}")
    print(f"training accuracy {net.score(X, y):.4f}")
    print(f"weights checksum {flat.sum():.12f} (sum), {np.abs(flat).sum():.12f} (abs sum)")
