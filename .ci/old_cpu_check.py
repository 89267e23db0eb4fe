"""Run by .ci/old_cpu under ``qemu-x86_64 -cpu Westmere``: the installed wheel imports, picks
the generic kernels, and trains a small classifier to the reference backend's weights."""

from __future__ import annotations

import numpy as np

import deltaprop as dp

info = dp.cpu_info()
print("cpu_info:", info)
assert info["isa"] == "generic", info
assert info["isas_supported"] == ["generic"], info

# Four Gaussian blobs in 8 dimensions: separable, so a trained net must get them nearly all.
rng = np.random.default_rng(0)
centres = rng.normal(scale=3.0, size=(4, 8))
y = rng.integers(0, 4, size=400)
X = centres[y] + rng.normal(size=(400, 8))
for dtype, rtol in (("float32", 1e-3), ("float64", 1e-9)):
    nets = {}
    for backend in ("native", "reference"):
        net = dp.MLP([8, 32, 4], activation="tanh", dtype=dtype, backend=backend, seed=1)
        net.fit(X, y, epochs=5, batch_size=32, optimizer=dp.SGD(lr=0.1, momentum=0.9))
        nets[backend] = net
    accuracy = nets["native"].score(X, y)
    print(f"{dtype}: accuracy {accuracy:.3f}")
    assert accuracy > 0.95, accuracy
    for a, b in zip(*(nets[k].get_weights()[0] for k in ("native", "reference"))):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol)
print("trained on the generic kernels, matching the reference backend")
