"""The running daemon holds its config as plain objects: pydantic validated it in a child that has exited.

pydantic and the config models are about 13 MB of an idle agent's memory for
the process's life, yet needed once. ``maintenance-agent run`` validates in a
short-lived child (``agent.config.plain.load_in_child``); this checks, on a
real ``run`` process against a real Consul, that pydantic's compiled core is
not mapped into the daemon, that no validating child is left behind, and
that a bad config still fails as ``check-config`` says it does.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from demo.harness.agents import AgentProcess, agent_doc, to_toml, wait_for_status
from demo.harness.consul import ConsulAgentProcess
from demo.harness.processes import PROJECT


def test_a_running_agent_has_no_pydantic_and_no_child_left(consul_server: ConsulAgentProcess, environment: str, tmp_path: Path) -> None:
    doc = agent_doc(consul_server.address, environment, "web-plain", ["web"], tmp_path / "state")
    proc = AgentProcess(doc, tmp_path / "agent").start()
    try:
        wait_for_status(consul_server.address, environment, "web-plain", state="active", timeout=30)
        assert proc.process is not None
        pid = proc.process.pid
        maps = Path(f"/proc/{pid}/maps").read_text()
        assert "_ssl" in maps, "sanity: the daemon's compiled modules are listed (its Consul transport loads ssl)"
        assert "pydantic" not in maps, "the daemon loaded pydantic"
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        assert children == [], f"the validating child is still there: {children}"
    finally:
        proc.stop()


def test_run_refuses_a_bad_config_exactly_as_check_config_does(tmp_path: Path) -> None:
    doc = agent_doc("http://127.0.0.1:9", "dev", "web-bad", ["web"], tmp_path / "state")
    doc["consul"]["session_ttl_seconds"] = 1
    config = tmp_path / "bad.toml"
    config.write_text(to_toml(doc))
    answers = [subprocess.run([sys.executable, "-m", "agent", command, "--config", str(config)], capture_output=True, text=True,
                              cwd=PROJECT, timeout=60) for command in ("check-config", "run")]
    assert [a.returncode for a in answers] == [2, 2]
    assert answers[0].stderr == answers[1].stderr and "consul.session_ttl_seconds" in answers[1].stderr, answers[1].stderr
