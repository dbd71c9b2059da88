"""The reliability figures of a test run: faults survived, inputs tried, actions lost.

Each fault, fuzz and ACL test calls ``record()`` once with what it proved;
the lines go to ``build/reliability/figures.jsonl`` (or ``$RELIABILITY_FIGURES``).
``scripts/reliability-figures`` runs those tests on a fresh file and writes
the totals into docs/reliability.md, so the figures there always come from
the run that produced them.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from demo.harness.processes import PROJECT


def figures_path() -> Path:
    return Path(os.environ.get("RELIABILITY_FIGURES") or PROJECT / "build/reliability/figures.jsonl")


def record(test: str, faults: int = 0, inputs: int = 0, actions_lost: int = 0, detail: str = "") -> None:
    path = figures_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    line = {"test": test, "faults": faults, "inputs": inputs, "actions_lost": actions_lost, "detail": detail, "at": time.time()}
    with path.open("a") as out:
        out.write(json.dumps(line) + "\n")


def totals(path: Path | None = None) -> dict:
    lines = [json.loads(line) for line in (path or figures_path()).read_text().splitlines() if line.strip()]
    return {
        "faults": sum(line["faults"] for line in lines),
        "inputs": sum(line["inputs"] for line in lines),
        "actions_lost": sum(line["actions_lost"] for line in lines),
        "tests": lines,
    }
