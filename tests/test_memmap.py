"""Training from disk: memory maps and other array-likes train without a whole copy."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import deltaprop as dp
from deltaprop import streaming, training


def _data(n: int = 203, d: int = 7, classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    X = rng.normal(size=(n, d))
    return X, (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)


def _memmap(tmp_path, X: np.ndarray) -> np.ndarray:
    np.save(tmp_path / "X.npy", X)
    return np.load(tmp_path / "X.npy", mmap_mode="r")


def _params(net: dp.MLP) -> list[np.ndarray]:
    W, b = net.get_weights()
    return W + b


class SortedReadsOnly:
    """An array-like that, like an h5py dataset, reads only slices and increasing indices."""

    def __init__(self, array: np.ndarray) -> None:
        self.array, self.shape, self.dtype = array, array.shape, array.dtype
        self.reads = 0

    def __getitem__(self, key):  # noqa: ANN001, ANN204
        if isinstance(key, np.ndarray):
            assert np.all(np.diff(key) > 0), "indices must increase"
        self.reads += 1
        return self.array[key].copy()


@pytest.mark.parametrize("shuffle", [True, False])
def test_streamed_epochs_visit_the_same_batches_as_in_memory(backend: str, shuffle: bool,
                                                            tmp_path, monkeypatch) -> None:
    X, y = _data()
    mm = _memmap(tmp_path, X)  # float64 on disk, float32 network: converted per chunk
    # A chunk of 3 batches of 10 rows: 203 rows make 7 chunks, the last one ragged.
    monkeypatch.setattr(streaming, "CHUNK_BYTES", 3 * 10 * 7 * 4)
    assert streaming.is_streamed(mm, np.dtype("float32"))
    opt = dict(optimizer=dp.SGD(lr=0.1, momentum=0.9), batch_size=10, shuffle=shuffle,
               epochs=3)
    ours = dp.MLP([7, 6, 3], backend=backend, seed=3)
    hist = ours.fit(mm, y, **opt)
    opt["optimizer"] = dp.SGD(lr=0.1, momentum=0.9)
    plain = dp.MLP([7, 6, 3], backend=backend, seed=3)
    ref = plain.fit(X.astype(np.float32), y, **opt)
    for p, q in zip(_params(ours), _params(plain)):
        np.testing.assert_array_equal(p, q)
    np.testing.assert_allclose(hist.loss, ref.loss, rtol=1e-6)


def test_array_likes_are_read_in_sorted_chunks_and_targets_built_per_chunk(monkeypatch) -> None:
    X, y = _data()
    Y = np.eye(3)[y] * 2 - 1  # regression targets, two-dimensional
    source = SortedReadsOnly(X)
    monkeypatch.setattr(streaming, "CHUNK_BYTES", 64 * 7 * 8)
    net = dp.MLP([7, 5, 3], loss="mse", dtype="float64", seed=1)
    data = training.training_data(net, source, Y, 16)
    assert isinstance(data, streaming.StreamedData) and data.chunk_rows == 64
    hist = net.fit(source, Y, epochs=2, batch_size=16, optimizer=dp.SGD(lr=0.05))
    plain = dp.MLP([7, 5, 3], loss="mse", dtype="float64", seed=1)
    plain.fit(X, Y, epochs=2, batch_size=16, optimizer=dp.SGD(lr=0.05))
    for p, q in zip(_params(net), _params(plain)):
        np.testing.assert_array_equal(p, q)
    assert hist.epochs == 2 and source.reads == 2 * 4 + 2 * 4  # validation pass + 2 epochs


def test_a_memmap_of_the_network_dtype_goes_to_the_backend_as_is(tmp_path) -> None:
    X, y = _data()
    mm = _memmap(tmp_path, X.astype(np.float32))
    net = dp.MLP([7, 4, 3])
    assert not streaming.is_streamed(mm, net.dtype)
    data = training.training_data(net, mm, y, 32)
    assert np.shares_memory(data.X, mm)  # no copy on the Python side; C++ borrows it too
    net.fit(mm, y, epochs=1)


def test_bad_rows_on_disk_raise_before_training(tmp_path) -> None:
    X, y = _data()
    X[150, 2] = np.nan
    mm = _memmap(tmp_path, X)
    net = dp.MLP([7, 4, 3], seed=0)
    before = _params(net)
    with pytest.raises(ValueError, match=r"X\[0:203\] must be finite; row 150"):
        net.fit(mm, y, epochs=1)
    with pytest.raises(ValueError, match="class labels"):
        net.fit(_memmap(tmp_path, np.nan_to_num(X)), y + 1, epochs=1)
    with pytest.raises(ValueError, match="features per sample"):
        net.fit(_memmap(tmp_path, X[:, :5]), y, epochs=1)
    for p, q in zip(before, _params(net)):
        np.testing.assert_array_equal(p, q)


def test_divergence_names_the_batch_of_the_epoch_not_of_the_chunk(tmp_path, monkeypatch) -> None:
    X, y = _data()
    X[157] = 1e30  # finite, but the loss of the batch holding it overflows
    monkeypatch.setattr(streaming, "CHUNK_BYTES", 2 * 10 * 7 * 4)
    batches = []
    for data in (X.astype(np.float32), _memmap(tmp_path, X)):
        net = dp.MLP([7, 4, 3], activation="identity", seed=0)
        with pytest.raises(dp.TrainingDiverged) as info:
            net.fit(data, y, epochs=1, batch_size=10, shuffle=False)
        batches.append(info.value.batch)
    assert batches[0] == batches[1] >= 15  # the batch of row 157 or, if its loss stays finite,
    # a later one


# A memory budget smaller than the data: RLIMIT_DATA caps the process's private writable memory
# (heap and anonymous maps) but not read-only file maps, so reading the data from its mapping is
# allowed and copying it is not. The worker proves the cap bites: np.array(mm) fails.
WORKER = textwrap.dedent("""
    import resource, sys
    import numpy as np
    import deltaprop as dp

    path32, path64, budget = sys.argv[1], sys.argv[2], int(sys.argv[3])
    small = np.zeros((256, 512), dtype=np.float32)
    dp.MLP([512, 32, 2]).fit(small, np.zeros(256, dtype=int), epochs=1)  # threads, buffers
    with open("/proc/self/status") as f:
        data_kb = next(int(line.split()[1]) for line in f if line.startswith("VmData:"))
    limit = data_kb * 1024 + budget
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    for path in (path32, path64):
        X = np.load(path, mmap_mode="r")
        y = (np.arange(X.shape[0]) % 2)
        try:
            np.array(X)
            print("copied", path)
        except MemoryError:
            pass
        net = dp.MLP([512, 32, 2], seed=0)
        hist = net.fit(X, y, epochs=1, batch_size=256)
        print("trained", X.dtype, X.nbytes >> 20, "MiB", hist.loss[0])
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_DATA semantics: Linux")
def test_a_memmap_larger_than_the_memory_budget_trains(tmp_path) -> None:
    rows, budget = 1 << 16, 64 << 20  # 128 MiB float32 and 256 MiB float64 data, 64 MiB cap
    for dtype, name in [(np.float32, "X32.npy"), (np.float64, "X64.npy")]:
        mm = np.lib.format.open_memmap(tmp_path / name, mode="w+", dtype=dtype,
                                       shape=(rows, 512))
        block = np.cos(np.arange(4096 * 512, dtype=dtype)).reshape(4096, 512)
        for lo in range(0, rows, 4096):
            mm[lo:lo + 4096] = block
        del mm
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "X32.npy"),
                          str(tmp_path / "X64.npy"), str(budget)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "copied" not in out.stdout  # the budget really is smaller than the data
    assert out.stdout.count("trained") == 2, out.stdout
