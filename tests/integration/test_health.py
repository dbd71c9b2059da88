"""/readyz says when the box cannot make progress, though every thread is alive (/healthz: alive)."""

from __future__ import annotations

import shutil
from pathlib import Path

import requests

from demo.harness.agents import agent_doc, metric, start_agent, wait_for_status
from demo.harness.consul import ConsulAgentProcess
from demo.harness.processes import wait_until


def test_readyz_reports_a_loop_that_cannot_save_its_state(consul_server: ConsulAgentProcess, environment: str, tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    agent = start_agent(agent_doc(consul_server.address, environment, "web-h", ["web"], state_dir))
    healthz = f"http://127.0.0.1:{agent.metrics_server.port}/healthz"
    readyz = f"http://127.0.0.1:{agent.metrics_server.port}/readyz"
    try:
        wait_for_status(consul_server.address, environment, "web-h", state="active")
        assert requests.get(readyz, timeout=5).status_code == 200
        shutil.rmtree(state_dir)
        state_dir.write_text("")  # a state_dir that cannot hold a file (full or read-only disks fail the same way)
        consul_server.kv_put(f"maintenance/{environment}/desired", "maintenance")
        answer = wait_until(lambda: (r := requests.get(readyz, timeout=5)).status_code == 503 and r.text, 15, what="/readyz to say 503")
        assert requests.get(healthz, timeout=5).status_code == 200, "alive: a restart would not fix a full disk"
        assert str(answer).startswith("cannot make progress: state file") and "cannot be written" in str(answer)
        assert float(metric(agent, "maintenance_loop_errors_total").split()[-1]) >= 1
        status = wait_for_status(consul_server.address, environment, "web-h", state="entering")
        assert status["error"].startswith("cannot make progress")
        state_dir.unlink()
        state_dir.mkdir()
        wait_for_status(consul_server.address, environment, "web-h", state="maintenance", timeout=20)
        assert requests.get(readyz, timeout=5).status_code == 200
    finally:
        agent.stop()
        requests.put(f"{consul_server.address}/v1/agent/maintenance?enable=false", timeout=5)
