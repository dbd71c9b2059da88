"""The layering contract in .importlinter holds (outer layers import inner ones, never the reverse)."""

from __future__ import annotations

import shutil
import subprocess

from demo.harness.processes import PROJECT


def test_import_contracts_are_kept() -> None:
    lint = shutil.which("lint-imports")
    assert lint, "import-linter is not installed: run scripts/install-deps"
    result = subprocess.run([lint, "--config", str(PROJECT / ".importlinter")], capture_output=True, text=True, cwd=PROJECT, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout
