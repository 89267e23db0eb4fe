"""The MLP class on both backends: construction, evaluation, training, validation, to()."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

import deltaprop as dp
from deltaprop.mlp import init_weights

XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
XOR_Y = np.array([0, 1, 1, 0])


def blobs(n: int = 60, n_features: int = 5, n_classes: int = 3, seed: int = 0
          ) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    centers = rng.normal(0, 2, (n_classes, n_features))
    return centers[y] + rng.normal(0, 0.5, (n, n_features)), y


def params(net: dp.MLP) -> list[np.ndarray]:
    W, b = net.get_weights()
    return W + (b or [])


def assert_same_params(a: dp.MLP | list[np.ndarray], b: dp.MLP | list[np.ndarray]) -> None:
    pa = params(a) if isinstance(a, dp.MLP) else a
    pb = params(b) if isinstance(b, dp.MLP) else b
    assert len(pa) == len(pb)
    for x, y in zip(pa, pb):
        np.testing.assert_array_equal(x, y)


# -- construction ---------------------------------------------------------------------------

def test_defaults_and_properties(backend: str) -> None:
    net = dp.MLP([4, 8, 3], backend=backend)
    assert net.sizes == (4, 8, 3) and net.n_layers == 2 and net.seed == 0
    assert net.dtype == np.float32 and net.backend == backend
    assert net.spec.activations == ("relu", "softmax") and net.spec.loss == "cross_entropy"
    assert repr(net) == (f"MLP([4, 8, 3], activation='relu', loss='cross_entropy', "
                         f"output_activation='softmax', bias=True, dtype='float32', "
                         f"backend='{backend}', seed=0)")


@pytest.mark.parametrize("kwargs, error", [
    ({"sizes": [3]}, ValueError),
    ({"sizes": [3, 0, 2]}, ValueError),
    ({"sizes": [3, 2.0]}, TypeError),
    ({"activation": "gelu"}, ValueError),
    ({"activation": "softmax"}, ValueError),
    ({"loss": "hinge"}, ValueError),
    ({"loss": "cross_entropy", "output_activation": "sigmoid"}, ValueError),
    ({"dtype": "float16"}, ValueError),
    ({"backend": "cuda"}, ValueError),
    ({"seed": -1}, ValueError),
    ({"seed": 1.5}, TypeError),
    ({"alpha": float("nan")}, ValueError),
])
def test_bad_constructor_arguments(kwargs: dict, error: type) -> None:
    args = {"sizes": [3, 4, 2], "backend": "reference", **kwargs}
    with pytest.raises(error):
        dp.MLP(**args)


def test_same_seed_same_weights_on_both_backends() -> None:
    a = dp.MLP([5, 7, 3], seed=42, backend="native", dtype="float64")
    b = dp.MLP([5, 7, 3], seed=42, backend="reference", dtype="float64")
    assert_same_params(a, b)
    c = dp.MLP([5, 7, 3], seed=43, backend="reference", dtype="float64")
    assert not np.array_equal(params(a)[0], params(c)[0])


def test_initialisation_is_he_for_relu_and_glorot_otherwise() -> None:
    spec = dp.MLP([50, 40, 30, 10], activation=["relu", "tanh"], backend="reference",
                  dtype="float64").spec
    W, b = init_weights(spec, 0)
    limits = [np.sqrt(6 / 50), np.sqrt(6 / 70), np.sqrt(6 / 40)]
    for w, limit in zip(W, limits):
        assert np.abs(w).max() <= limit and np.abs(w).max() > 0.9 * limit
    assert all((v == 0).all() for v in b)
    W32, _ = init_weights(spec.__class__(**{**spec.__dict__, "dtype": np.dtype("float32")}), 0)
    np.testing.assert_array_equal(W32[0], W[0].astype(np.float32))


# -- parameters -----------------------------------------------------------------------------

def test_get_weights_returns_copies(backend: str) -> None:
    net = dp.MLP([3, 4, 2], backend=backend)
    W, b = net.get_weights()
    W[0][:] = 7
    b[0][:] = 7
    assert not (net.get_weights()[0][0] == 7).any()


def test_set_weights_round_trip_and_casting(backend: str) -> None:
    net = dp.MLP([3, 4, 2], backend=backend, bias=False)
    W = [np.arange(12).reshape(3, 4), np.ones((4, 2), dtype=np.float64) / 3]
    net.set_weights(W)
    got, biases = net.get_weights()
    assert biases is None and got[0].dtype == np.float32
    np.testing.assert_array_equal(got[0], W[0])
    np.testing.assert_array_equal(got[1], np.float32(1 / 3))


@pytest.mark.parametrize("bad, error", [
    (lambda W, b: (W[:1], b), ValueError),
    (lambda W, b: ([W[0].T, W[1]], b), ValueError),
    (lambda W, b: (W, None), ValueError),
    (lambda W, b: (W, [b[0]]), ValueError),
    (lambda W, b: ([W[0], np.full_like(W[1], np.nan)], b), ValueError),
    (lambda W, b: ([W[0], W[1].astype(complex)], b), TypeError),
    (lambda W, b: (W, [b[0], np.array(["x", "y"])]), TypeError),
])
def test_bad_set_weights_leaves_the_network_unchanged(backend: str, bad, error: type) -> None:
    net = dp.MLP([3, 4, 2], backend=backend, seed=3)
    before = params(net)
    W, b = net.get_weights()
    W = [w + 1 for w in W]  # a valid first array must not be applied either
    with pytest.raises(error):
        net.set_weights(*bad(W, b))
    assert_same_params(net, before)


# -- evaluation ------------------------------------------------------------------------------

def test_forward_loss_and_gradients_agree_with_the_reference(backend: str) -> None:
    X, y = blobs()
    net = dp.MLP([5, 6, 3], activation="tanh", backend=backend, dtype="float64", seed=1)
    ref = net.to("reference")
    np.testing.assert_allclose(net.forward(X), ref.forward(X), rtol=1e-12, atol=1e-14)
    assert net.loss(X, y) == pytest.approx(ref.loss(X, y), rel=1e-12)
    (dW, db), (rW, rb) = net.gradients(X, y), ref.gradients(X, y)
    for g, r in zip(dW + db, rW + rb):
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("loss, n_out, y, pred_shape, proba_shape", [
    ("cross_entropy", 3, np.array([0, 2, 1, 1, 0]), (5,), (5, 3)),
    ("binary_cross_entropy", 1, np.array([0, 1, 1, 0, 1]), (5,), (5, 2)),
    ("binary_cross_entropy", 3, np.eye(3)[[0, 2, 1, 1, 0]], (5, 3), (5, 3)),
    ("mse", 2, np.ones((5, 2)), (5, 2), None),
])
def test_predict_and_score_shapes(backend: str, loss: str, n_out: int, y: np.ndarray,
                                  pred_shape: tuple, proba_shape: tuple | None) -> None:
    X = np.random.default_rng(0).normal(size=(5, 4))
    net = dp.MLP([4, 6, n_out], loss=loss, backend=backend)
    pred = net.predict(X)
    assert pred.shape == pred_shape
    if loss != "mse":
        assert pred.dtype.kind == "i"
        proba = net.predict_proba(X)
        assert proba.shape == proba_shape
        if loss == "cross_entropy" or n_out == 1:
            np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-6)
        assert 0 <= net.score(X, y) <= 1
    else:
        with pytest.raises(ValueError, match="regressor"):
            net.predict_proba(X)
        assert net.score(X, y) <= 1


def test_score_accepts_labels_or_one_hot_rows(backend: str) -> None:
    X, y = blobs()
    net = dp.MLP([5, 8, 3], backend=backend)
    expected = np.mean(net.predict(X) == y)
    assert net.score(X, y) == expected == net.score(X, np.eye(3)[y])


def test_r2_score_of_an_exact_linear_fit_is_one(backend: str) -> None:
    net = dp.MLP([2, 1], loss="mse", backend=backend, dtype="float64")
    net.set_weights([np.array([[1.0], [2.0]])], [np.array([0.5])])
    X = np.random.default_rng(0).normal(size=(10, 2))
    y = X @ [1.0, 2.0] + 0.5
    assert net.score(X, y) == pytest.approx(1.0)
    assert net.score(X, y + 1) < 1


def test_r2_score_of_huge_values_is_finite_and_warns_of_nothing(backend: str) -> None:
    # Found by tests/test_fuzz.py: squared residuals of values near 1e200 overflowed float64,
    # so score() returned NaN (with a RuntimeWarning) where R² is an ordinary number.
    net = dp.MLP([2, 1], loss="mse", backend=backend, dtype="float64")
    net.set_weights([np.array([[1.0], [2.0]])], [np.array([0.0])])
    rng = np.random.default_rng(0)
    X, noise = rng.normal(size=(10, 2)), rng.normal(size=10)
    y = X @ [1.0, 2.0] + noise
    assert net.score(X * 1e200, y * 1e200) == pytest.approx(net.score(X, y), rel=1e-12)
    assert net.score(X * 1e-200, y * 1e-200) == pytest.approx(net.score(X, y), rel=1e-12)


def test_r2_score_too_negative_to_sum_is_their_mean_and_warns_of_nothing(backend: str) -> None:
    # Found by .ci/fuzz: each output column's R² was finite, near -1e308, and r2.mean() summed
    # them past the largest float64 (RuntimeWarning: overflow encountered in reduce).
    net = dp.MLP([1, 2], loss="mse", backend=backend, dtype="float64")
    net.set_weights([np.zeros((1, 2))], [np.full(2, 5e153)])  # every output is 5e153
    X, y = np.zeros((2, 1)), np.array([[0.0, 0.0], [1.0, 1.0]])
    r2 = net.score(X, y)
    assert math.isfinite(r2) and r2 == pytest.approx(-1e308, rel=1e-6)


# -- training -------------------------------------------------------------------------------

def test_train_step_returns_the_loss_before_the_update(backend: str) -> None:
    X, y = blobs(20)
    net = dp.MLP([5, 8, 3], backend=backend, dtype="float64")
    before = net.loss(X, y)
    assert net.train_step(X, y, dp.SGD(lr=0.1)) == pytest.approx(before, rel=1e-12)
    assert net.loss(X, y) < before


def test_the_same_optimizer_object_keeps_its_state(backend: str) -> None:
    X, y = blobs(20)
    a = dp.MLP([5, 8, 3], backend=backend, dtype="float64")
    b = dp.MLP([5, 8, 3], backend=backend, dtype="float64")
    adam = dp.Adam(lr=0.01)
    a.train_step(X, y, adam)
    a.train_step(X, y, adam)
    b.train_step(X, y, dp.Adam(lr=0.01))
    b.train_step(X, y, dp.Adam(lr=0.01))  # a new object: fresh moments, step 1 again
    assert not np.allclose(params(a)[0], params(b)[0], rtol=0, atol=1e-12)


def fit_args(X: np.ndarray, y: np.ndarray) -> list[tuple[dict, type]]:
    return [
        ({"epochs": 0}, ValueError), ({"epochs": 2.0}, TypeError),
        ({"batch_size": 0}, ValueError), ({"batch_size": "32"}, TypeError),
        ({"optimizer": "sgd"}, TypeError), ({"shuffle": "yes"}, TypeError),
        ({"validation_data": (X[:, :3], y)}, ValueError),
        ({"validation_data": (X, y[:-1])}, ValueError),
        ({"validation_data": X}, TypeError), ({"callback": 3}, TypeError),
        ({"y": y + 5}, ValueError), ({"X": X[:, :4]}, ValueError),
    ]


@pytest.mark.parametrize("case", range(12))
def test_bad_fit_arguments_leave_the_network_unchanged(backend: str, case: int) -> None:
    X, y = blobs(20)
    kwargs, error = fit_args(X, y)[case]
    net = dp.MLP([5, 8, 3], backend=backend)
    adam = dp.Adam()
    net.fit(X, y, epochs=1, optimizer=adam)
    before, state = params(net), net._net.optimizer_state()
    call = {"X": X, "y": y, "epochs": 1, "optimizer": adam, **kwargs}
    with pytest.raises(error):
        net.fit(call.pop("X"), call.pop("y"), **call)
    assert_same_params(net, before)
    assert net._epochs_seen == 1 and net._optimizer is adam
    assert net._net.optimizer_state()["step"] == state["step"]


@pytest.mark.parametrize("stream", [False, True])
def test_epoch_loss_of_huge_but_finite_batch_losses_is_finite(backend: str, stream: bool,
                                                               tmp_path) -> None:
    # Found by .ci/fuzz: float64 batch losses near 1e308 are finite, but the epoch's Σ loss · rows
    # overflowed, and fit returned an infinite loss without raising TrainingDiverged.
    net = dp.MLP([1, 2], loss="cross_entropy", bias=False, dtype="float64", backend=backend)
    net.set_weights([np.array([[1.0, -1.0]])])
    X, y = np.full((16, 1), 5e307), np.ones(16, dtype=int)  # each sample's loss is 1e308
    if stream:  # a memory map goes through the chunked loop of deltaprop/streaming.py
        np.save(tmp_path / "X.npy", X)
        X = np.load(tmp_path / "X.npy", mmap_mode="r")
    history = net.fit(X, y, epochs=1, batch_size=1, optimizer=dp.SGD(lr=1e-320))
    np.testing.assert_allclose(history.loss, [1e308], rtol=1e-9)  # W moves by ~1e-12


@pytest.mark.parametrize("dtype, steps", [("float32", 1000), ("float64", 7000)])
@pytest.mark.parametrize("optimizer", [dp.Adam(lr=1e-3), dp.SGD(lr=0.01, momentum=0.9)])
def test_decayed_optimizer_moments_are_stored_as_zero_not_subnormal(
        backend: str, dtype: str, steps: int, optimizer: dp.SGD | dp.Adam) -> None:
    # Found by profiling Adam on an Intel Xeon: moments whose gradient had stopped decayed by
    # β1 a step through the subnormal range, where every instruction reading them took a
    # microcode assist (MNIST-shaped Adam 2× slower). They are now stored as 0.
    rng = np.random.default_rng(0)
    net = dp.MLP([3, 4, 2], activation="tanh", loss="mse", bias=False, dtype=dtype,
                 backend=backend)
    y = rng.normal(size=(8, 2))
    net.fit(rng.normal(size=(8, 3)), y, epochs=5, batch_size=8, optimizer=optimizer)
    # X = 0 and no biases: every layer's input is 0, so every weight gradient is exactly 0.
    net.fit(np.zeros((8, 3)), y, epochs=steps, batch_size=8, optimizer=optimizer)
    tiny = np.finfo(dtype).tiny
    state = net._net.optimizer_state()
    moments = [a for k in ("m_weights", "v_weights") for a in state.get(k) or []]
    assert moments and all(np.all((a == 0) | (np.abs(a) >= tiny)) for a in moments)
    assert all(np.all(a == 0) for a in state["m_weights"])  # decayed all the way


@pytest.mark.parametrize("how", ["train_step", "fit"])
@pytest.mark.parametrize("bad", [{"eps": 1e-320}, {"lr": 1e300}, {"lr": 1e-300},
                                 {"weight_decay": 1e300}])
def test_a_new_optimizer_refused_in_float32_keeps_the_old_state(backend: str, how: str,
                                                                bad: dict) -> None:
    # Found by fuzzing: eps 1e-320 or lr 1e300 is a valid Adam but 0 or inf in float32; the
    # backend refused it only after switching optimizers had reset the old one's moments.
    X, y = blobs(20)
    net = dp.MLP([5, 8, 3], backend=backend)
    adam = dp.Adam()
    net.train_step(X, y, adam)
    before, state = params(net), net._net.optimizer_state()
    with pytest.raises(ValueError, match="float32"):
        if how == "fit":
            net.fit(X, y, epochs=1, optimizer=dp.Adam(**bad))
        else:
            net.train_step(X, y, dp.Adam(**bad))
    assert_same_params(net, before)
    assert net._optimizer is adam
    after = net._net.optimizer_state()
    assert after["step"] == state["step"] == 1
    for k in ("m_weights", "v_weights"):
        for a, b in zip(after[k], state[k]):
            np.testing.assert_array_equal(a, b)


def test_bad_train_step_leaves_the_network_unchanged(backend: str) -> None:
    X, y = blobs(20)
    net = dp.MLP([5, 8, 3], backend=backend)
    before = params(net)
    for args, error in [((X, y, "adam"), TypeError), ((X, y + 3, dp.SGD()), ValueError),
                        ((X[:, :2], y, dp.SGD()), ValueError)]:
        with pytest.raises(error):
            net.train_step(*args)
    assert_same_params(net, before)


def test_fit_records_history_and_continues_across_calls(backend: str) -> None:
    X, y = blobs(50)
    one = dp.MLP([5, 8, 3], backend=backend, dtype="float64", seed=5)
    two = dp.MLP([5, 8, 3], backend=backend, dtype="float64", seed=5)
    opt_one, opt_two = dp.SGD(lr=0.05, momentum=0.9), dp.SGD(lr=0.05, momentum=0.9)
    hist = one.fit(X, y, epochs=4, batch_size=8, optimizer=opt_one, validation_data=(X, y))
    assert hist.epochs == len(hist.val_loss) == len(hist.val_score) == len(hist.epoch_time) == 4
    assert set(hist.as_dict()) >= {"loss", "val_loss", "val_score", "samples_per_second"}
    assert hist.loss[-1] < hist.loss[0] and "epochs=4" in repr(hist)
    two.fit(X, y, epochs=2, batch_size=8, optimizer=opt_two)
    h2 = two.fit(X, y, epochs=2, batch_size=8, optimizer=opt_two)
    assert h2.val_loss == [] and h2.epochs == 2
    assert_same_params(one, two)


def test_fit_clips_the_batch_size_and_stops_on_callback(backend: str) -> None:
    X, y = blobs(10)
    net = dp.MLP([5, 4, 3], backend=backend)
    seen = []
    hist = net.fit(X, y, epochs=5, batch_size=1000,
                   callback=lambda epoch, h: seen.append(epoch) or epoch == 1)
    assert seen == [0, 1] and hist.epochs == 2


def test_progress_bar_only_when_asked(backend: str, capsys: pytest.CaptureFixture) -> None:
    X, y = blobs(10)
    net = dp.MLP([5, 4, 3], backend=backend)
    net.fit(X, y, epochs=2)
    assert capsys.readouterr() == ("", "")
    pytest.importorskip("tqdm")
    net.fit(X, y, epochs=2, progress=True, validation_data=(X, y))
    err = capsys.readouterr().err
    assert "100%" in err and "epoch 2/2" in err and "val_score=" in err


def test_progress_without_tqdm_is_a_clear_import_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)
    X, y = blobs(10)
    net = dp.MLP([5, 4, 3], backend="reference")
    before = params(net)
    with pytest.raises(ImportError, match="pip install tqdm"):
        net.fit(X, y, epochs=1, progress=True)
    assert_same_params(net, before)


def test_xor_converges(backend: str) -> None:
    net = dp.MLP([2, 8, 1], activation="tanh", loss="binary_cross_entropy", backend=backend,
                 seed=0)
    net.fit(XOR_X, XOR_Y, epochs=300, batch_size=4, optimizer=dp.Adam(lr=0.05))
    np.testing.assert_array_equal(net.predict(XOR_X), XOR_Y)
    assert net.loss(XOR_X, XOR_Y) < 0.05


def test_digits_reach_95_percent(backend: str) -> None:
    datasets = pytest.importorskip("sklearn.datasets")
    selection = pytest.importorskip("sklearn.model_selection")
    digits = datasets.load_digits()
    X_train, X_test, y_train, y_test = selection.train_test_split(
        digits.data / 16.0, digits.target, test_size=0.25, stratify=digits.target,
        random_state=0)
    net = dp.MLP([64, 128, 64, 10], backend=backend, seed=0)
    net.fit(X_train, y_train, epochs=20, batch_size=32, optimizer=dp.SGD(lr=0.05, momentum=0.9))
    assert net.score(X_test, y_test) >= 0.95


def test_native_and_reference_train_to_the_same_weights() -> None:
    X, y = blobs(50)
    nets = [dp.MLP([5, 9, 7, 3], activation="leaky_relu", backend=b, dtype="float64", seed=2)
            for b in ("native", "reference")]
    for net in nets:
        net.fit(X, y, epochs=5, batch_size=7, optimizer=dp.Adam(lr=0.01, weight_decay=1e-3))
    for a, b in zip(params(nets[0]), params(nets[1])):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_native_training_is_bitwise_identical_for_1_and_2_threads(dtype: str) -> None:
    X, y = blobs(200, n_features=37)
    results = []
    default = dp.get_num_threads()
    try:
        for threads in (1, 2):
            dp.set_num_threads(threads)
            net = dp.MLP([37, 70, 33, 3], backend="native", dtype=dtype, seed=9)
            net.fit(X, y, epochs=2, batch_size=50, optimizer=dp.Adam(lr=0.01))
            results.append(params(net))
    finally:
        dp.set_num_threads(default)
    assert_same_params(*results)


# -- to() -----------------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["native", "reference"])
def test_to_carries_weights_and_optimizer_state(backend: str, target: str) -> None:
    X, y = blobs(30)
    net = dp.MLP([5, 8, 3], backend=backend, dtype="float64", seed=4)
    adam = dp.Adam(lr=0.01)
    net.fit(X, y, epochs=2, batch_size=8, optimizer=adam)
    moved = net.to(target)
    assert moved.backend == target and moved is not net and moved.seed == net.seed
    assert_same_params(moved, net)
    net.fit(X, y, epochs=2, batch_size=8, optimizer=adam)
    moved.fit(X, y, epochs=2, batch_size=8, optimizer=adam)
    for a, b in zip(params(net), params(moved)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    assert_same_params(moved.to(backend), moved)


# -- zero copy ------------------------------------------------------------------------------

def test_the_backend_sees_the_callers_array(backend: str) -> None:
    net = dp.MLP([5, 4, 3], backend=backend, dtype="float64")
    X = np.random.default_rng(0).normal(size=(6, 5))
    seen = []
    original = net._net.forward
    net._net.forward = lambda A: seen.append(A) or original(A)
    net.forward(X)
    assert np.shares_memory(seen[0], X)


# NumPy may warn about the overflow on its way to the non-finite loss; the error is the point.
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_divergence_stops_fit_with_the_history_so_far(backend: str) -> None:
    X, _ = blobs(40)
    y = X @ np.arange(1.0, 6.0)
    net = dp.MLP([5, 16, 1], loss="mse", backend=backend, dtype="float64")
    with pytest.raises(dp.TrainingDiverged) as exc:
        net.fit(X, y, epochs=50, batch_size=8, optimizer=dp.SGD(lr=10.0))
    assert exc.value.history.epochs == exc.value.epoch < 50
    assert all(np.isfinite(p).all() for p in params(net))
