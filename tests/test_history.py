"""History: what fit records per epoch, History.plot, and the progress bars."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import deltaprop as dp


def blobs(n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 5))
    return X, (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)


def test_history_records_every_epoch() -> None:
    X, y = blobs()
    hist = dp.MLP([5, 8, 3]).fit(X, y, epochs=4, validation_data=(X[:50], y[:50]))
    record = hist.as_dict()
    assert all(len(record[k]) == 4 for k in record)
    assert all(t > 0 for t in hist.epoch_time) and all(s > 0 for s in hist.samples_per_second)
    assert hist.lr == [0.01] * 4 and 0 <= min(hist.val_score) <= max(hist.val_score) <= 1


def test_plot_draws_both_panels_and_saves_a_png(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    X, y = blobs()
    net = dp.MLP([5, 16, 3], seed=0)
    hist = net.fit(X, y, epochs=15, optimizer=dp.SGD(lr=0.2, momentum=0.9),
                   validation_data=(X[:100], y[:100]))
    fig = hist.plot(tmp_path / "curves.png")
    loss_ax, score_ax = fig.axes
    assert [line.get_label() for line in loss_ax.get_lines()] == ["training loss",
                                                                  "validation loss"]
    np.testing.assert_allclose(loss_ax.get_lines()[0].get_ydata(), hist.loss)
    np.testing.assert_allclose(score_ax.get_lines()[0].get_ydata(), hist.val_score)
    png = (tmp_path / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    # Without validation data the right panel shows throughput; without a path, pyplot.
    import matplotlib.pyplot as plt

    fig = net.fit(X, y, epochs=3).plot()
    assert fig.axes[1].get_title() == "training throughput" and plt.fignum_exists(fig.number)
    plt.close(fig)


def test_plot_without_matplotlib_says_how_to_get_it(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    hist = dp.MLP([5, 3]).fit(*blobs(20), epochs=1)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        hist.plot()


def test_one_bar_per_epoch_with_rate_loss_and_validation(capsys) -> None:
    pytest.importorskip("tqdm")
    X, y = blobs()
    net = dp.MLP([5, 8, 3])
    net.fit(X, y, epochs=3, validation_data=(X, y))
    assert capsys.readouterr() == ("", "")  # nothing printed when off
    net.fit(X, y, epochs=3, validation_data=(X, y), progress=True)
    err = capsys.readouterr().err
    for epoch in (1, 2, 3):
        assert f"epoch {epoch}/3" in err
    assert "sample/s" in err and "loss=" in err and "val_loss=" in err
    assert err.count("100%") == 3


def test_the_native_loop_feeds_the_bar_during_a_long_epoch(monkeypatch) -> None:
    pytest.importorskip("tqdm")
    from deltaprop import progress

    calls = []
    original = progress.ProgressBar.batch_done

    def spy(self, samples, loss_sum):
        calls.append(samples)
        original(self, samples, loss_sum)

    monkeypatch.setattr(progress.ProgressBar, "batch_done", spy)
    rng = np.random.default_rng(1)
    n = 80_000
    X = rng.normal(size=(n, 64)).astype(np.float32)
    # Batch 1 for well over 0.1 s, as the loop reports at most every 0.1 s, in samples done:
    # ~0.5 s on a 2-core AMD EPYC (12,000 samples, enough before the online step got faster,
    # then took 0.08 s and gave the bar one call).
    net = dp.MLP([64, 256, 256, 2])
    net.fit(X, (X[:, 0] > 0).astype(int), epochs=1, batch_size=1, progress=True)
    assert len(calls) >= 2 and calls == sorted(calls) and all(0 < c <= n for c in calls)
