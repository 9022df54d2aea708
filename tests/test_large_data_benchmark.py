"""benchmarks/large_data.py still runs against the current API (a tiny file, a few steps),
and removes the file it generated."""

import subprocess
import sys
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "large_data.py"


def test_large_data_benchmark_runs_both_modes_and_cleans_up(tmp_path):
    argv = ["--gb", "0.002", "--steps", "4", "--rounds", "1", "--dir", str(tmp_path)]
    proc = subprocess.run([sys.executable, str(BENCHMARK), *argv], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "500 examples × 1000 float32" in proc.stdout
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    assert [row.split("|")[1].strip() for row in rows[1:]] == ["streamed", "in memory"]
    assert list(tmp_path.iterdir()) == []
