"""Data-parallel training (deltaprop.distributed): flat gradients on both backends in-process,
and ``mpiexec -n 2`` / ``-n 4`` runs on loopback that must equal single-process training.

The MPI runs launch one worker script (``WORKER`` below) per rank count; it plays every
scenario in turn and prints one JSON line per rank and scenario. Each launch has a timeout and
its whole process group is killed when it expires, so a deadlock fails the test, never hangs it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections import defaultdict

import numpy as np
import pytest

import deltaprop as dp
from deltaprop.distributed import slice_bounds

BACKENDS = ["native", "reference"]
OPTIMIZERS = [dp.SGD(lr=0.1), dp.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
              dp.Adam(lr=0.01, weight_decay=1e-2)]


# -- the flat-gradient contract, no MPI needed -------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bias", [True, False])
def test_gradients_into_matches_gradients(backend, bias):
    rng = np.random.default_rng(0)
    net = dp.MLP([5, 4, 3], activation="tanh", bias=bias, dtype="float64", backend=backend)
    X, T = net._data(rng.normal(size=(9, 5)), rng.integers(0, 3, 9))
    flat = np.full(net._net.n_parameters, np.nan)
    loss = net._net.gradients_into(X, T, flat)
    dW, db = net.gradients(X, T)
    pairs = zip(dW, db) if bias else ((w,) for w in dW)
    expected = np.concatenate([g.ravel() for pair in pairs for g in pair])
    np.testing.assert_allclose(flat, expected, rtol=1e-12, atol=1e-15)
    assert loss == pytest.approx(net.loss(X, T), rel=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("optimizer", OPTIMIZERS, ids=["sgd", "nesterov", "adam"])
def test_gradients_into_then_apply_equals_train_step(backend, optimizer):
    rng = np.random.default_rng(1)
    a = dp.MLP([6, 5, 3], activation="relu", dtype="float64", backend=backend, seed=2)
    b = dp.MLP([6, 5, 3], activation="relu", dtype="float64", backend=backend, seed=2)
    X, T = a._data(rng.normal(size=(12, 6)), rng.integers(0, 3, 12))
    flat = np.zeros(a._net.n_parameters)
    for _ in range(3):
        a._net.gradients_into(X, T, flat)
        a._net.apply_gradients(flat, optimizer)
        b._net.train_step(X, T, optimizer)
    for wa, wb in zip(a.get_weights()[0] + a.get_weights()[1],
                      b.get_weights()[0] + b.get_weights()[1]):
        np.testing.assert_allclose(wa, wb, rtol=0, atol=1e-14)


@pytest.mark.parametrize("rows", [0, 1, 3, 4, 7, 128, 203])
@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_slices_cover_a_batch_once_and_in_order(rows, size):
    bounds = [slice_bounds(rows, size, r) for r in range(size)]
    assert bounds[0][0] == 0 and bounds[-1][1] == rows
    assert all(hi == lo for (_, hi), (lo, _) in zip(bounds, bounds[1:]))
    assert max(hi - lo for lo, hi in bounds) - min(hi - lo for lo, hi in bounds) <= 1


# -- mpiexec runs ------------------------------------------------------------------------------

def _mpiexec() -> list[str] | None:
    """The launcher of the MPI that mpi4py uses (the venv's own first), with the flags it
    needs to run more ranks than cores, or None when MPI or mpi4py is missing."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return None
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    exe = shutil.which("mpiexec", path=path)
    if exe is None:
        return None
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
    if "Open MPI" in version.stdout + version.stderr:  # MPICH's hydra needs no flag
        return [exe, "--oversubscribe", "--allow-run-as-root"]
    return [exe]


MPIEXEC = _mpiexec()
needs_mpi = pytest.mark.skipif(
    MPIEXEC is None, reason="MPI not installed: needs mpi4py and mpiexec "
    "(pip install 'deltaprop[mpi]')")

WORKER = textwrap.dedent('''
    from __future__ import annotations
    import hashlib, json, sys
    import numpy as np
    from mpi4py import MPI
    import deltaprop as dp

    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    rng = np.random.default_rng(0)
    # 195 = 6 batches of 32 and one of 3: with 4 ranks the last batch leaves rank 0 empty.
    X = rng.normal(size=(195, 7))
    y = rng.integers(0, 3, 195)
    np.save(sys.argv[1] + "/X.npy", X) if rank == 0 else None
    comm.Barrier()
    X_mapped = np.load(sys.argv[1] + "/X.npy", mmap_mode="r")

    # One file per rank: ranks' lines on a shared stdout may interleave mid-line.
    log = open(f"{sys.argv[1]}/rank{rank}.jsonl", "w")

    def report(name, **fields):
        log.write(json.dumps({"scenario": name, "rank": rank, **fields}) + "\\n")
        log.flush()

    def weights(net):
        W, b = net.get_weights()
        return np.concatenate([a.ravel() for a in W + (b or [])])

    def run(name, make_net, data, fit_kw, single_kw=None):
        net = make_net()
        try:
            h = net.fit(*data, comm=comm, **fit_kw)
        except Exception as exc:
            report(name, error=type(exc).__name__, message=str(exc),
                   epoch=getattr(exc, "epoch", None), batch=getattr(exc, "batch", None))
            return
        single = make_net()
        h1 = single.fit(np.asarray(data[0]), data[1], **(single_kw or fit_kw))
        report(name, diff=float(np.abs(weights(net) - weights(single)).max()),
               loss_diff=float(np.abs(np.subtract(h.loss, h1.loss)).max()),
               checksum=hashlib.sha256(weights(net).tobytes()).hexdigest())

    opts = {"sgd": lambda: dp.SGD(lr=0.1),
            "nesterov": lambda: dp.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
            "adam": lambda: dp.Adam(lr=0.01, weight_decay=1e-2)}
    for backend in ("native", "reference"):
        for opt_name, opt in opts.items():
            for bias in (True, False):
                make = lambda: dp.MLP([7, 16, 8, 3], activation="tanh", bias=bias,
                                      dtype="float64", backend=backend, seed=3)
                o = opt()  # one object per fit call, shared by its epochs
                run(f"equal-{backend}-{opt_name}-{bias}", make, (X_mapped, y),
                    dict(epochs=3, batch_size=32, optimizer=o),
                    dict(epochs=3, batch_size=32, optimizer=opt()))

    make = lambda: dp.MLP([7, 16, 3], dtype="float32", seed=1)
    run("float32", make, (X, y), dict(epochs=2, batch_size=16, optimizer=dp.SGD(lr=0.1)))
    make64 = lambda: dp.MLP([7, 16, 3], dtype="float64", seed=1)
    run("batch-below-ranks", make64, (X[:3], y[:3]), dict(epochs=2, batch_size=3),
        dict(epochs=2, batch_size=3))

    net = make64()
    try:  # rank 0 alone asks to stop after the second epoch: every rank must stop there
        h = net.fit(X, y, epochs=5, batch_size=32, validation_data=(X[:50], y[:50]), comm=comm,
                    callback=lambda epoch, history: rank == 0 and epoch == 1)
        report("callback-stops", epochs=h.epochs, val_loss=h.val_loss)
    except Exception as exc:
        report("callback-stops", error=type(exc).__name__, message=str(exc))

    X_bad = X.copy()
    X_bad[195 * 1 // comm.Get_size() + 1, 2] = np.nan  # in rank 1's block of rows only
    run("nan-on-rank-1", make64, (X_bad, y), dict(epochs=1, batch_size=32))
    regressor = lambda: dp.MLP([7, 16, 3], loss="mse", dtype="float64", seed=1)
    Y = rng.normal(size=(195, 3))
    run("diverged", regressor, (X, Y), dict(epochs=2, batch_size=32, optimizer=dp.SGD(lr=10.0)))
    run("different-settings", make64, (X, y), dict(epochs=1, batch_size=32 + rank))

    net = make64()
    if rank == 1:  # the third step on rank 1 fails mid-epoch
        inner, calls = net._net.gradients_into, []
        def failing(*args):
            calls.append(1)
            if len(calls) == 3:
                raise MemoryError("injected failure")
            return inner(*args)
        net._net.gradients_into = failing
    run("step-fails-on-rank-1", lambda: net, (X, y), dict(epochs=1, batch_size=32))

    def perturb(epoch, history):  # a rank drifting apart: what the checksum must catch
        if rank == 1:
            W, b = net.get_weights()
            net.set_weights([W[0] + 1e-9] + W[1:], b)
    net = make64()
    run("drift-detected", lambda: net, (X, y),
        dict(epochs=2, batch_size=32, callback=perturb))
''')


def _launch(n: int, tmp_path, timeout: float = 120) -> dict[str, dict[int, dict]]:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    # DELTAPROP_MPI_CHECK: every step of every scenario verifies the ranks' weights agree.
    env = dict(os.environ, OMP_NUM_THREADS="1", DELTAPROP_MPI_CHECK="1")
    proc = subprocess.Popen(MPIEXEC + ["-n", str(n), sys.executable, str(script), str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # mpiexec and every rank it started
        out, err = proc.communicate()
        pytest.fail(f"mpiexec -n {n} hung for {timeout} s (deadlock?)\n{out[-3000:]}{err[-3000:]}")
    assert proc.returncode == 0, f"mpiexec -n {n} failed:\n{out[-3000:]}\n{err[-3000:]}"
    results: dict[str, dict[int, dict]] = defaultdict(dict)
    for rank in range(n):
        for line in (tmp_path / f"rank{rank}.jsonl").read_text().splitlines():
            record = json.loads(line)
            results[record["scenario"]][record["rank"]] = record
    return results


@pytest.fixture(scope="module", params=[2, 4], ids=["n2", "n4"])
def ranks(request, tmp_path_factory):
    if MPIEXEC is None:
        pytest.skip("MPI not installed: needs mpi4py and mpiexec (pip install 'deltaprop[mpi]')")
    n = request.param
    return n, _launch(n, tmp_path_factory.mktemp(f"mpi{n}"))


@needs_mpi
def test_ranks_equal_single_process(ranks):
    n, results = ranks
    equal = {k: v for k, v in results.items() if k.startswith("equal-")}
    assert len(equal) == 12
    for name, by_rank in equal.items():
        assert sorted(by_rank) == list(range(n)), name
        for r in by_rank.values():
            assert "error" not in r, (name, r)
            assert r["diff"] < 1e-12 and r["loss_diff"] < 1e-12, (name, r)
        assert len({r["checksum"] for r in by_rank.values()}) == 1, name
    for r in results["float32"].values():
        assert r["diff"] < 1e-5, r
    for r in results["batch-below-ranks"].values():  # some ranks get no rows in any step
        assert r["diff"] < 1e-12, r


@needs_mpi
def test_a_callback_stopping_one_rank_stops_all(ranks):
    n, results = ranks
    by_rank = results["callback-stops"]
    assert sorted(by_rank) == list(range(n))
    assert all(r.get("epochs") == 2 for r in by_rank.values()), by_rank
    assert len({tuple(r["val_loss"]) for r in by_rank.values()}) == 1


def _all_raised(results, scenario, n, error):
    by_rank = results[scenario]
    assert sorted(by_rank) == list(range(n)), f"{scenario}: ranks reporting {sorted(by_rank)}"
    for r in by_rank.values():
        assert r.get("error") == error, (scenario, r)
    return by_rank


@needs_mpi
def test_bad_data_on_one_rank_raises_on_every_rank(ranks):
    n, results = ranks
    by_rank = _all_raised(results, "nan-on-rank-1", n, "ValueError")
    assert "NaN" in by_rank[1]["message"]
    assert "rank 1" in by_rank[0]["message"]


@needs_mpi
def test_failed_step_on_one_rank_raises_on_every_rank(ranks):
    n, results = ranks
    by_rank = _all_raised(results, "step-fails-on-rank-1", n, "MemoryError")
    assert "injected failure" in by_rank[0]["message"]


@needs_mpi
def test_divergence_is_reported_by_every_rank_at_the_same_batch(ranks):
    n, results = ranks
    by_rank = _all_raised(results, "diverged", n, "TrainingDiverged")
    assert len({(r["epoch"], r["batch"]) for r in by_rank.values()}) == 1


@needs_mpi
def test_ranks_with_different_settings_are_refused(ranks):
    n, results = ranks
    _all_raised(results, "different-settings", n, "ValueError")


@needs_mpi
def test_consistency_check_catches_drifting_weights(ranks):
    n, results = ranks
    by_rank = _all_raised(results, "drift-detected", n, "RuntimeError")
    assert "differ across ranks" in by_rank[0]["message"]
