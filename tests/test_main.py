"""The command line: ``python -m deltaprop demo`` is the package's main job."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

import deltaprop
from deltaprop.__main__ import main


def test_demo_trains_both_backends_to_95_percent(capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("sklearn")
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    accuracies = [float(a) for a in re.findall(r"test accuracy ([0-9.]+)", out)]
    assert len(accuracies) == 2 and min(accuracies) >= 0.95
    assert re.search(r"speedup native/reference: [0-9.]+x", out)
    difference = float(re.search(r"between the backends after training: (\S+)", out).group(1))
    assert difference < 1e-8


def test_info_names_the_version_and_runtime(capsys: pytest.CaptureFixture) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"deltaprop {deltaprop.__version__}" in out and "isa:" in out and "threads:" in out


def test_usage_errors_exit_with_status_2(capsys: pytest.CaptureFixture) -> None:
    for argv in ([], ["train-everything"], ["demo", "--epochs", "many"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
    capsys.readouterr()


def test_python_dash_m_runs_the_installed_package() -> None:
    result = subprocess.run([sys.executable, "-m", "deltaprop", "info"], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("deltaprop ")
