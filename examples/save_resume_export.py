"""Model files and ONNX: save a training run, resume it bit for bit, export it for serving.

    python examples/save_resume_export.py
    DELTAPROP_EXAMPLES_FAST=1 python examples/save_resume_export.py

1. Train for a few epochs and ``dp.save(net, path, optimizer=opt)``: weights, architecture,
   the epoch counter and Adam's moments go into one ``.npz`` (plain arrays + JSON, no pickle).
2. ``dp.load(path, with_optimizer=True)`` and train on: the result is bitwise the same as a run
   that never stopped.
3. ``deltaprop.onnx.export(net, "model.onnx")`` and run it with onnxruntime (if installed):
   the same outputs as ``net.forward``.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

import deltaprop as dp

FAST = os.environ.get("DELTAPROP_EXAMPLES_FAST") == "1"
N, EPOCHS = (500, 2) if FAST else (5000, 6)


def make_data() -> tuple[np.ndarray, np.ndarray]:
    """Points in 8-D labelled by which of 4 random centres is nearest."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 8))
    X = rng.normal(size=(N, 8)).astype(np.float32)
    y = ((X[:, None, :] - centres) ** 2).sum(axis=2).argmin(axis=1)
    return X, y


def new_run() -> tuple[dp.MLP, dp.Adam]:
    return dp.MLP([8, 32, 32, 4], activation="tanh", seed=1), dp.Adam(lr=3e-3)


def main() -> None:
    X, y = make_data()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "run.npz")

        net, opt = new_run()
        net.fit(X, y, epochs=EPOCHS, batch_size=64, optimizer=opt)
        dp.save(net, path, optimizer=opt)
        print(f"saved after {EPOCHS} epochs: accuracy {net.score(X, y):.4f}, "
              f"{os.path.getsize(path):,} bytes")

        resumed, resumed_opt = dp.load(path, with_optimizer=True)
        print(f"loaded {resumed!r}\n  with {resumed_opt}")
        resumed.fit(X, y, epochs=EPOCHS, batch_size=64, optimizer=resumed_opt)

        straight, straight_opt = new_run()
        straight.fit(X, y, epochs=2 * EPOCHS, batch_size=64, optimizer=straight_opt)
        same = all(a.tobytes() == b.tobytes()
                   for a, b in zip(resumed.get_weights()[0], straight.get_weights()[0]))
        print(f"{EPOCHS} + {EPOCHS} epochs across a save/load == {2 * EPOCHS} straight: "
              f"{'bitwise identical' if same else 'DIFFERENT'} "
              f"(accuracy {resumed.score(X, y):.4f})")
        assert same

        try:
            import onnxruntime as ort

            import deltaprop.onnx
        except ImportError:
            print('ONNX export skipped: pip install "deltaprop[onnx]" for onnx and onnxruntime')
            return
        onnx_path = os.path.join(tmp, "model.onnx")
        model = deltaprop.onnx.export(resumed, onnx_path)
        session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
        outputs = session.run(None, {"X": X})[0]
        diff = float(np.abs(outputs - resumed.forward(X)).max())
        print(f"ONNX graph {[node.op_type for node in model.graph.node]} (opset "
              f"{model.opset_import[0].version}); onnxruntime vs net.forward: max |diff| "
              f"{diff:.1e}")
        assert diff < 1e-5


if __name__ == "__main__":
    main()
