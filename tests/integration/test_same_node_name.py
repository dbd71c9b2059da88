"""Two agents configured with the same node name: the second reports a conflict, the first keeps its key."""

from __future__ import annotations

import time
from pathlib import Path

import requests
from structlog.testing import capture_logs

from demo.harness.agents import agent_doc, metric, start_agent, wait_for_status
from demo.harness.consul import ConsulAgentProcess
from demo.harness.processes import wait_until


def holder(consul: ConsulAgentProcess, key: str) -> str | None:
    r = requests.get(f"{consul.address}/v1/kv/{key}", timeout=5)
    return r.json()[0].get("Session") if r.status_code == 200 else None


def test_second_agent_with_the_same_node_name_reports_a_conflict_and_never_takes_the_key(
        consul_server: ConsulAgentProcess, environment: str, tmp_path: Path) -> None:
    consul = consul_server
    key = f"maintenance/{environment}/status/web-twin"
    first = start_agent(agent_doc(consul.address, environment, "web-twin", ["web"], tmp_path / "first"))
    second = None
    try:
        wait_for_status(consul.address, environment, "web-twin", state="active")
        owner = holder(consul, key)
        assert owner
        with capture_logs() as logs:
            second = start_agent(agent_doc(consul.address, environment, "web-twin", ["web"], tmp_path / "second"))
            wait_until(lambda: "maintenance_status_key_conflict 1.0" in metric(second, "maintenance_status_key_conflict"), 15,
                       what="the second agent to report the conflict")
            # Watch the key for longer than several report intervals (TTL 10 s: every 3.3 s): it never changes hands.
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline:
                assert holder(consul, key) == owner
                time.sleep(0.2)
        conflicts = [e for e in logs if e.get("event") == "status key held by another agent; not taking it over"]
        assert len(conflicts) == 1 and conflicts[0]["log_level"] == "error" and owner in conflicts[0]["conflict"]
        health = requests.get(f"http://127.0.0.1:{second.metrics_server.port}/healthz", timeout=5).text
        assert "status key conflict" in health
        ready = requests.get(f"http://127.0.0.1:{second.metrics_server.port}/readyz", timeout=5)
        assert ready.status_code == 503 and "status key conflict" in ready.text
        assert "maintenance_status_key_conflict 0.0" in metric(first, "maintenance_status_key_conflict")

        index = consul.kv_put(f"maintenance/{environment}/desired", "maintenance")  # the first one keeps working
        status = wait_for_status(consul.address, environment, "web-twin", state="maintenance", intent_index=index)
        assert status["node"] == "web-twin" and holder(consul, key) == owner

        first.stop()  # releases its session: now the second may take the key, and says so
        first = None
        wait_until(lambda: holder(consul, key) not in (None, owner), 15, what="the second agent to take the released key")
        wait_until(lambda: "maintenance_status_key_conflict 0.0" in metric(second, "maintenance_status_key_conflict"), 5,
                   what="the conflict to clear")
        assert requests.get(f"http://127.0.0.1:{second.metrics_server.port}/readyz", timeout=5).status_code == 200
        index = consul.kv_put(f"maintenance/{environment}/desired", "active")  # and it acts and reports as that box
        wait_for_status(consul.address, environment, "web-twin", state="active", intent_index=index)
    finally:
        for agent in (first, second):
            if agent is not None:
                agent.stop()
