"""The benchmark scripts still run against the current API (their quick modes, on mnist-small)."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize(
    "script, expected",
    [
        ("plain_python.py", "speed-up"),
        ("run.py", "| vaekit, numpy engine |"),
        ("distributed.py", "| 2 | 1 |"),
        ("anomaly.py", "| breast cancer (benign), 1 split |"),
    ],
)
def test_benchmark_quick_mode_runs(script, expected):
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert expected in proc.stdout
