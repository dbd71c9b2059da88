"""The running daemon holds its config as plain objects: pydantic validated it in a child that has exited.

pydantic and the config models are about 13 MB of an idle agent's memory for
the process's life, yet needed once. ``maintenance-agent run`` validates in a
short-lived child (``agent.config.plain.load_in_child``); this checks, on a
real ``run`` process against a real Consul, that pydantic's compiled core is
not mapped into the daemon, that no validating child is left behind, and
that a bad config still fails as ``check-config`` says it does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

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


CHECK = [{"name": "ui", "url": "http://127.0.0.1:9/", "headers": {"Host": "pay.example"}}]
COMMANDS = {"svc": {"stop": "true", "start": "true", "status": "true", "running": "false", "stop_running": "true"}}
SUPERVISOR = {"url": "http://127.0.0.1:9", "username": "u", "password": "p"}
ROLES: dict[str, dict[str, Any]] = {
    "edge telling partners, chat, silences, alert gate": {
        "agent": {"roles": ["edge", "web"]}, "edge": {"verify_maintenance": CHECK, "verify_active": CHECK}, "web": {"smoke": CHECK},
        "notices": {"contact": "NOC", "partners": [{"name": "acme", "url": "https://hooks.acme.example/m", "secret": "0123456789abcdef"},
                                                   {"name": "globex", "email": ["Globex <noc@globex.example>"]}],
                    "smtp": {"host": "smtp.internal", "sender": "Pay <maint@pay.example>"}, "chat": {"url": "https://chat.internal/h"}},
        "alertmanager": {"url": "http://127.0.0.1:9"}, "alert_gate": {"source": "alertmanager", "url": "http://127.0.0.1:9"}},
    "web": {"agent": {"roles": ["web"]}, "web": {"smoke": CHECK}, "hooks": {"dir": "/etc/maintenance-agent/hooks.d"}},
    "worker, systemd": {"agent": {"roles": ["worker"]}, "worker": {"backend": "systemd", "services": ["ledger@*.service"]}},
    "worker, supervisor": {"agent": {"roles": ["worker"]}, "worker": {"backend": "supervisor", "services": ["a"], "supervisor": SUPERVISOR}},
    "worker and scheduler, commands": {"agent": {"roles": ["worker", "scheduler"]},
                                       "worker": {"backend": "command", "services": ["svc"], "commands": COMMANDS},
                                       "scheduler": {"backend": "command", "jobs": ["svc"], "commands": COMMANDS}},
    "scheduler, systemd": {"agent": {"roles": ["scheduler"]}, "scheduler": {"backend": "systemd", "jobs": ["report.timer"]}},
    "scheduler, supervisor": {"agent": {"roles": ["scheduler"]}, "scheduler": {"backend": "supervisor", "jobs": ["r"], "supervisor": SUPERVISOR}},
}

BUILD = """
import json, sys
from agent.config.plain import load_in_child
from agent.daemon.app import Agent
agent = Agent(load_in_child(sys.argv[1]))  # wires every step and backend of its roles, imports what they need
print(json.dumps(sorted(m for m in sys.modules if m.startswith(("pydantic", "annotated_types", "agent.config.")))))
"""


@pytest.mark.parametrize("tables", ROLES.values(), ids=ROLES.keys())
def test_no_role_wires_pydantic_back_in(tables: dict[str, Any], tmp_path: Path) -> None:
    """Each role's steps and backends are imported only when the box has the role: every one is wired here."""
    doc = agent_doc("http://127.0.0.1:9", "dev", "box-1", [], tmp_path / "state")
    doc["metrics"] = {"listen": "127.0.0.1:0"}
    for table, keys in tables.items():
        doc[table] = {**doc.get(table, {}), **keys}
    config = tmp_path / "box.toml"
    config.write_text(to_toml(doc))
    built = subprocess.run([sys.executable, "-c", BUILD, str(config)], capture_output=True, text=True, cwd=PROJECT, timeout=60)
    assert built.returncode == 0, built.stderr
    assert json.loads(built.stdout.splitlines()[-1]) == ["agent.config.connection", "agent.config.methods", "agent.config.plain"]
