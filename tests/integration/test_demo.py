"""The README's demo command runs end to end and leaves no process behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from demo.harness.processes import PROJECT


@pytest.mark.slow
def test_demo_runs_and_cleans_up(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "demo", "--pause", "0", "--workdir", str(tmp_path)],
                            capture_output=True, text=True, cwd=PROJECT, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "converged: every box maintenance" in out and "converged: every box active" in out
    assert "demo done" in out
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    assert leftovers.stdout.strip() == "", f"processes left running: {leftovers.stdout}"
