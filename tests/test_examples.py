"""Every script in examples/ runs to completion (in its fast mode), so none can rot.

Each runs in a subprocess, as a user would run it, with ``DELTAPROP_EXAMPLES_FAST=1`` (fewer
epochs, smaller data) and a temporary working directory. The examples check their own results
with ``assert``, so a wrong number fails here too.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py"))
NEEDS_SKLEARN = {"digits_classification.py", "regression.py"}


def arguments(script: str, tmp_path: Path) -> list[str]:
    if script == "train_mpi.py":  # writes its data set to the path it is given
        return [str(tmp_path / "train_mpi_data.npy")]
    return []


def test_examples_exist() -> None:
    assert {"digits_classification.py", "regression.py", "backprop_by_hand.py",
            "benchmark_backends.py", "save_resume_export.py"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_example_runs(script: str, tmp_path: Path) -> None:
    if script in NEEDS_SKLEARN and importlib.util.find_spec("sklearn") is None:
        pytest.skip(f"{script} needs scikit-learn for its data set")
    env = {**os.environ, "DELTAPROP_EXAMPLES_FAST": "1"}
    result = subprocess.run([sys.executable, str(EXAMPLES / script),
                             *arguments(script, tmp_path)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 0, f"{script} failed:\n{result.stdout}\n{result.stderr}"
    assert result.stdout.strip(), f"{script} printed nothing"
