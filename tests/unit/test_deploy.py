"""The shipped systemd unit is valid for systemd itself (systemd-analyze verify)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from demo.harness.processes import PROJECT, require_binary


def test_unit_file_verifies(tmp_path: Path) -> None:
    analyze = require_binary("systemd-analyze")
    executable = shutil.which("maintenance-agent")
    assert executable, "maintenance-agent is not installed: run scripts/install-deps"
    unit = (PROJECT / "deploy/systemd/maintenance-agent.service").read_text()
    assert "Type=notify" in unit and "WatchdogSec=" in unit
    target = tmp_path / "maintenance-agent.service"
    target.write_text(unit.replace("/opt/maintenance-agent/bin/maintenance-agent", executable))
    result = subprocess.run([analyze, "verify", str(target)], capture_output=True, text=True, timeout=60)
    problems = [line for line in (result.stdout + result.stderr).splitlines() if "maintenance-agent.service" in line]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr
