"""The window gauges of a real agent, read through its /metrics as Prometheus scrapes them: right at every scrape.

The agent is given a long resync (as an operator may, up to 3600 s) so that
nothing but the scrape itself can bring the figures up to date.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

from demo.harness.consul import ConsulAgentProcess
from tests.fixtures.windows import window_fleet


def scrape(port: int) -> dict[str, float]:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    out = {}
    for line in text.splitlines():
        if line.startswith(("maintenance_window_seconds_until_end ", "maintenance_window_overrun_seconds ")):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_window_gauges_are_right_at_every_scrape(consul_server: ConsulAgentProcess, environment: str, tmp_path: Path) -> None:
    with window_fleet(consul_server, environment, tmp_path / "fleet") as fleet:
        box = fleet.add("worker-1", ["worker"], agent={
            "node": "worker-1", "roles": ["worker"], "environment": environment, "state_dir": str(tmp_path / "fleet" / "worker-1"),
            "resync_seconds": 3600, "retry_max_seconds": 1})
        assert box.metrics_server is not None
        port = box.metrics_server.port
        fleet.wait_states("active")
        assert scrape(port) == {"maintenance_window_seconds_until_end": 0.0, "maintenance_window_overrun_seconds": 0.0}

        ends = datetime.now(UTC) + timedelta(seconds=6)
        intent = {"mode": "maintenance", "reason": "gauges", "ends_at": ends.isoformat()}
        index = consul_server.kv_put(f"maintenance/{environment}/desired", json.dumps(intent))
        fleet.wait_states("maintenance", intent_index=index)
        for _ in range(3):
            time.sleep(1.0)
            figures, now = scrape(port), datetime.now(UTC)
            assert abs(figures["maintenance_window_seconds_until_end"] - (ends - now).total_seconds()) < 0.5, figures
            assert figures["maintenance_window_overrun_seconds"] == 0.0

        time.sleep(max(0.0, (ends - datetime.now(UTC)).total_seconds()) + 3.0)
        for _ in range(2):
            figures, now = scrape(port), datetime.now(UTC)
            late = (now - ends).total_seconds()
            assert abs(figures["maintenance_window_overrun_seconds"] - late) < 0.5, figures
            assert abs(figures["maintenance_window_seconds_until_end"] + late) < 0.5, figures
            time.sleep(1.0)

        off = consul_server.kv_put(f"maintenance/{environment}/desired", "active")
        fleet.wait_states("active", intent_index=off)
        assert scrape(port) == {"maintenance_window_seconds_until_end": 0.0, "maintenance_window_overrun_seconds": 0.0}
