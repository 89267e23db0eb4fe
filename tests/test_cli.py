"""``deltaprop train`` and ``predict`` end to end on .csv, .npz and .npy files, and their errors."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

import deltaprop as dp
from deltaprop.cli import main


def blobs(n: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three well-separated classes in 4 features."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = rng.normal(size=(n, 4)) * 0.3 + np.eye(3, 4)[y] * 3
    return X, y


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    return path


def read_csv(path: Path) -> tuple[list[str], np.ndarray]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], np.array(rows[1:], dtype=float)


def run(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_csv_train_then_predict(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    X, y = blobs()
    data = write_csv(tmp_path / "train.csv", ["a", "b", "label", "c", "d"],
                     [[*x[:2], t, *x[2:]] for x, t in zip(X, y)])
    model = tmp_path / "model.npz"
    status, out, _ = run(["train", data, "--target", "label", "--layers", "16,8", "--epochs",
                          "30", "--batch-size", "16", "--lr", "0.01", "--validation-split",
                          "0.25", "--out", model], capsys)
    assert status == 0 and "validation accuracy" in out and model.exists()
    net, opt = dp.load(model, with_optimizer=True)
    assert net.sizes == (4, 16, 8, 3) and net.spec.loss == "cross_entropy"
    assert isinstance(opt, dp.Adam) and opt.lr == 0.01

    preds = tmp_path / "preds.csv"
    status, _, err = run(["predict", model, data, "--target", "2", "--out", preds], capsys)
    assert status == 0 and "accuracy on" in err
    header, values = read_csv(preds)
    assert header == ["prediction"]
    np.testing.assert_array_equal(values[:, 0], net.predict(X))
    assert net.score(X, y) > 0.95

    status, out, _ = run(["predict", model, data, "--target", "label", "--proba"], capsys)
    header, *rows = list(csv.reader(out.splitlines()))
    probs = np.array(rows, dtype=float)
    assert header == ["p0", "p1", "p2"] and probs.shape == (120, 3)
    np.testing.assert_allclose(probs, net.predict_proba(X), rtol=1e-6)  # exact up to repr


def test_npz_regression_round_trip_is_exact(tmp_path: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(80, 3))
    Y = np.stack([X[:, 0] - X[:, 1], X[:, 2] ** 2], axis=1)
    np.savez(tmp_path / "d.npz", X=X, y=Y)
    model = tmp_path / "r.npz"
    status, out, _ = run(["train", tmp_path / "d.npz", "--optimizer", "sgd", "--momentum",
                          "0.9", "--epochs", "5", "--dtype", "float64", "--backend",
                          "reference", "--activation", "tanh", "--out", model], capsys)
    assert status == 0 and "R^2" in out
    net = dp.load(model)
    assert net.spec.loss == "mse" and net.sizes == (3, 64, 2) and net.backend == "reference"
    status, out, err = run(["predict", model, tmp_path / "d.npz"], capsys)
    assert status == 0 and "R^2 on" in err
    header, *rows = list(csv.reader(out.splitlines()))
    assert header == ["prediction0", "prediction1"]
    assert np.array(rows, dtype=float).tobytes() == net.predict(X).tobytes()  # repr-exact


def test_npy_with_target_file_or_column(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    X, y = blobs(60, seed=2)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    write_csv(tmp_path / "y.csv", ["label"], [[t] for t in y])
    np.save(tmp_path / "Xy.npy", np.column_stack([X, y]))
    for extra in (["--target-file", tmp_path / "y.npy"], ["--target-file", tmp_path / "y.csv"]):
        status, _, _ = run(["train", tmp_path / "X.npy", *extra, "--epochs", "2", "--out",
                            tmp_path / "m.npz"], capsys)
        assert status == 0
    status, _, _ = run(["train", tmp_path / "Xy.npy", "--target", "-1", "--loss",
                        "cross_entropy", "--epochs", "2", "--out", tmp_path / "m2.npz"], capsys)
    assert status == 0
    a, b = dp.load(tmp_path / "m.npz"), dp.load(tmp_path / "m2.npz")
    for u, v in zip(a.get_weights()[0], b.get_weights()[0]):
        assert u.tobytes() == v.tobytes()  # same data by both routes, same network
    status, out, _ = run(["predict", tmp_path / "m.npz", tmp_path / "X.npy"], capsys)
    assert status == 0 and len(out.splitlines()) == 61


def bad_files(tmp: Path) -> dict[str, Path]:
    files = {"ragged": write_csv(tmp / "ragged.csv", ["a", "b"], [[1, 2], [3]]),
             "text": write_csv(tmp / "text.csv", ["a", "b"], [[1, "cat"]]),
             "empty": tmp / "empty.csv", "header only": write_csv(tmp / "h.csv", ["a"], []),
             "no X": tmp / "noX.npz", "3-D": tmp / "cube.npy", "unknown": tmp / "data.txt",
             "labels": write_csv(tmp / "labels.csv", ["x", "t"], [[0, 0.5], [1, 1.5]])}
    files["empty"].write_text("")
    np.savez(files["no X"], features=np.ones((2, 2)))
    np.save(files["3-D"], np.ones((2, 2, 2)))
    files["unknown"].write_text("1,2\n")
    return files


TRAIN_ERRORS = [
    (["{missing}"], "no such file"),
    (["{ragged}", "--target", "a"], "line 3: 1 fields; the header has 2"),
    (["{text}", "--target", "a"], "'cat' is not a number"),
    (["{empty}", "--target", "a"], "is empty"),
    (["{header only}", "--target", "a"], "no data rows"),
    (["{labels}", "--target", "c"], "no column 'c'; its columns are x, t"),
    (["{labels}", "--target", "7"], "column index 7 is out of range"),
    (["{no X}"], "no array 'X'"),
    (["{3-D}", "--target-file", "{3-D}"], "expected a 2-D array"),
    (["{unknown}"], "unknown data format '.txt'"),
    (["{labels}", "--target", "t", "--loss", "cross_entropy"], "integer class labels"),
    (["{labels}", "--target", "t", "--layers", "8,x"], "--layers must be comma-separated"),
    (["{labels}", "--target", "t", "--validation-split", "1.5"], "--validation-split"),
    (["{labels}", "--target", "t", "--epochs", "0"], "epochs"),
]


@pytest.mark.parametrize("argv,message", TRAIN_ERRORS, ids=[m for _, m in TRAIN_ERRORS])
def test_train_errors_are_one_line(argv: list[str], message: str, tmp_path: Path,
                                   capsys: pytest.CaptureFixture) -> None:
    files = {**bad_files(tmp_path), "missing": tmp_path / "missing.csv"}
    argv = [a.format(**files) if a.startswith("{") else a for a in argv]
    status, _, err = run(["train", *argv, "--out", tmp_path / "m.npz"], capsys)
    assert status == 1 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "m.npz").exists()


def test_predict_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    X, y = blobs(30)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    assert run(["train", tmp_path / "d.npz", "--epochs", "1", "--out", tmp_path / "m.npz"],
               capsys)[0] == 0
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 not really a zip")
    np.savez(tmp_path / "wide.npz", X=np.ones((3, 5)))
    cases = [([tmp_path / "nope.npz", tmp_path / "d.npz"], "no such model file"),
             ([tmp_path / "corrupt.npz", tmp_path / "d.npz"], "not a readable .npz"),
             ([tmp_path / "m.npz", tmp_path / "wide.npz"], "5 feature columns; the model "
                                                          "expects 4; if it includes"),
             ([tmp_path / "m.npz", tmp_path / "none.csv"], "no such file")]
    for argv, message in cases:
        status, _, err = run(["predict", *argv], capsys)
        assert status == 1 and message in err, err


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for argv in (["train"], ["train", "d.csv", "--target", "a", "--target-file", "y.npy"],
                 ["train", "d.csv", "--optimizer", "rmsprop"], ["predict", "m.npz"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
    capsys.readouterr()


def test_info_reports_the_runtime(capsys: pytest.CaptureFixture) -> None:
    status, out, _ = run(["info"], capsys)
    assert status == 0
    for key in ("isa:", "isas supported:", "threads:", "openmp:", "openmp runtime:",
                "compiler:", "native module:"):
        assert key in out, key
    build = next(line for line in out.splitlines() if line.startswith("build_flags:"))
    assert "-O3" in build and "-march=native" not in build  # the default build is portable


def test_console_script_trains(tmp_path: Path) -> None:
    script = Path(sysconfig.get_path("scripts")) / ("deltaprop.exe" if os.name == "nt"
                                                    else "deltaprop")
    if not script.exists():
        pytest.skip(f"the console script is not installed at {script}")
    X, y = blobs(40)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    result = subprocess.run([str(script), "train", str(tmp_path / "d.npz"), "--epochs", "1",
                             "--out", str(tmp_path / "m.npz")], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    result = subprocess.run([sys.executable, "-m", "deltaprop", "predict",
                             str(tmp_path / "m.npz"), str(tmp_path / "d.npz")],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0 and len(result.stdout.splitlines()) == 41, result.stderr
