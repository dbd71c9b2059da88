"""The README's demo command runs end to end in a real 80-column terminal, reads there, and leaves no process behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from demo.harness.processes import PROJECT
from tests.fixtures.terminal import terminal

WIDTH = 80


def _tables(lines: list[str]) -> list[list[str]]:
    """The box-drawn tables on the screen, each as its lines from the top border to the bottom one."""
    out: list[list[str]] = []
    current: list[str] | None = None
    for line in lines:
        if line.startswith("┏"):
            current = [line]
        elif current is not None:
            current.append(line)
            if line.startswith("└"):
                out.append(current)
                current = None
    return out


@pytest.mark.slow
def test_demo_runs_and_reads_in_an_80_column_terminal(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    with terminal(tmp_path / "tmux", WIDTH, 50) as screen:
        lines, code = screen.run([sys.executable, "-m", "demo", "--pause", "0", "--workdir", str(workdir)],
                                 {"PYTHONPATH": str(PROJECT), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}, timeout=300, scrollback=True)
    text = "\n".join(lines)
    assert code == 0, text[-3000:]
    assert "converged: every box maintenance" in text and "converged: every box active" in text and "demo done" in text
    tables = _tables(lines)
    assert len(tables) == 6, "traffic and boxes, before, during and after"
    for table in tables:
        for line in table:
            assert len(line) <= WIDTH and line[-1] in "┓┃┩│┘", f"a table line cut at {WIDTH} columns: {line!r}"
    traffic = [t for t in tables if "Retry-After" in t[1]]
    assert len(traffic) == 3 and all(re.search(r"┃ status ┃ Retry-After ┃", t[1]) for t in traffic), "both headers whole"
    during = traffic[1]
    partner = next(line for line in during if "API partner" in line)
    assert re.search(r"│ GET /api/payments │\s+503 │\s+\d{2,4} │ \{", partner), partner
    staff = [line for line in during if "GET /" in line and " 200 │" in line]
    assert len(staff) == 2, "staff reach the real backends"
    leftovers = subprocess.run(["pgrep", "-f", str(workdir)], capture_output=True, text=True)
    assert leftovers.stdout.strip() == "", f"processes left running: {leftovers.stdout}"
