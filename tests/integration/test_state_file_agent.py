"""A real agent process on an unusable state file: it stays up, holds the box, says so once, and resumes on an operator's reset."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import requests

from demo.harness.agents import AgentProcess, agent_doc, metric, wait_for_status
from demo.harness.consul import ConsulAgentProcess
from demo.harness.processes import PROJECT


def test_a_truncated_state_file_holds_the_box_until_confirm_state_reset(consul_server: ConsulAgentProcess, environment: str,
                                                                          tmp_path: Path) -> None:
    box = tmp_path / "box"
    box.mkdir()
    worker = {"backend": "command", "services": ["svc"],
              "commands": {"svc": {"stop": f"rm -f {box}/svc", "start": f"touch {box}/svc", "status": f"test -f {box}/svc"}}}
    doc = agent_doc(consul_server.address, environment, "worker-c", ["worker"], tmp_path / "state", worker=worker)
    (tmp_path / "state").mkdir()
    state_file = tmp_path / "state/state.json"
    state_file.write_text('{"machine": {"state": "maintenance", "intent_index": 7}, "step:worker-services": {"snapsh')
    consul_server.kv_put(f"maintenance/{environment}/desired", "active")
    proc = AgentProcess(doc, tmp_path / "agent").start()
    try:
        status = wait_for_status(consul_server.address, environment, "worker-c", state="unknown", timeout=30)
        assert status["error"].startswith(f"state file unreadable: state file {state_file} is not valid JSON")
        assert not (box / "svc").exists(), "the box is held as it is: nothing started on a guess"
        assert proc.process is not None and proc.process.alive()
        log = proc.log()
        assert log.count("state file unusable") == 1 and str(state_file) in log and "Traceback" not in log
        config = tmp_path / "agent" / "worker-c.toml"
        reset = subprocess.run([sys.executable, "-m", "agent", "confirm-state-reset", "--config", str(config)],
                               capture_output=True, text=True, cwd=PROJECT, timeout=30)
        assert reset.returncode == 0 and "kept as" in reset.stdout, reset.stdout + reset.stderr
        wait_for_status(consul_server.address, environment, "worker-c", state="active", error=None, timeout=30)
        assert [p.name for p in (tmp_path / "state").iterdir() if p.name.startswith("state.json.unreadable-")]
    finally:
        proc.stop()


def test_the_unreadable_metric_is_exported(consul_server: ConsulAgentProcess, environment: str, tmp_path: Path) -> None:
    from demo.harness.agents import start_agent

    (tmp_path / "state").mkdir()
    (tmp_path / "state/state.json").write_text("null")
    agent = start_agent(agent_doc(consul_server.address, environment, "web-n", ["web"], tmp_path / "state"))
    try:
        wait_for_status(consul_server.address, environment, "web-n", state="unknown", timeout=20)
        assert "maintenance_state_file_unreadable 1.0" in metric(agent, "maintenance_state_file_unreadable")
        # Alive for Consul (the check binding the session: the status saying "unknown" must stay), not ready.
        base = f"http://127.0.0.1:{agent.metrics_server.port}"
        health, ready = requests.get(f"{base}/healthz", timeout=5), requests.get(f"{base}/readyz", timeout=5)
        assert health.status_code == 200 and "state=unknown" in health.text, health.text
        assert ready.status_code == 503 and "state file" in ready.text, ready.text
    finally:
        agent.stop()
