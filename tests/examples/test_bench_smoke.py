"""`python -m benchmarks --quick` runs end to end and prints its table (no timing asserted)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers.paths import ROOT


def test_quick_benchmark_prints_the_table(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--runs", "1", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| # | Benchmark | jdkit | Reference | Ratio | Notes |" in proc.stdout
    for key in "abcde":
        assert f"\n| {key} | " in proc.stdout, f"no row for ({key})"
    assert "target < 10 %" in proc.stdout
    written = out.read_text()
    assert "| # | Benchmark |" in written
    assert "quick smoke run" in written
    assert f"{os.cpu_count()} cores" in written
