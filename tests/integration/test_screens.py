"""What maintctl shows in a real terminal (tmux at 80 and 160 columns) and piped: whole names and states, each error once."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from agent.clients.consul import ConsulGateway, ttl_check
from agent.ops.history import HistoryStore, Request, WindowRecord
from demo.harness.consul import ConsulAgentProcess
from tests.fixtures.scripts import run_script, script_argv, script_env
from tests.fixtures.terminal import terminal

BOXES = [("edge-1", "edge", "maintenance"), ("web-1.maintenance-long-hostname", "web", "maintenance"),
         ("worker-2-long-hostname.a", "worker", "entering"), ("worker-2-long-hostname.b", "worker", "entering")]
ERROR = "worker-services: stop svc: `/usr/local/bin/stop-svc` exited with 7: sc stop: Access is denied"


@pytest.fixture
def fleet_mid_entry(consul_server: ConsulAgentProcess, environment: str) -> Iterator[str]:
    """Four registered boxes of long names, two workers failing the same step, in a real Consul."""
    gateway = ConsulGateway(consul_server.address)
    index = consul_server.kv_put(f"maintenance/{environment}/desired", json.dumps({
        "mode": "maintenance", "reason": "CHG-1234 kernel patch on every box", "by": "alice", "ends_at": "2030-01-01T23:00:00+00:00"}))
    for node, role, state in BOXES:
        gateway.register_agent_service(f"maintenance-agent:{environment}:{node}", [f"env:{environment}", f"role:{role}"], {"box": node},
                                       check=ttl_check(f"maintenance-agent:{environment}:{node}:ttl", 600))
        consul_server.kv_put(f"maintenance/{environment}/status/{node}", json.dumps({
            "node": node, "roles": [role], "state": state, "intent_index": index, "since": "2029-12-31T22:01:02+00:00",
            "error": ERROR if role == "worker" else None, "blocked_on": None, "progress": {role: state}}))
    opened = datetime(2029, 12, 31, 22, 0, tzinfo=UTC)
    HistoryStore(gateway, f"maintenance/{environment}").open(WindowRecord(
        opened=Request(at=opened.isoformat(), by="alice", reason="CHG-1234 kernel patch on every box", intent_index=index),
        starts_at=opened.isoformat(), ends_at="2030-01-01T23:00:00+00:00"), opened)
    try:
        yield environment
    finally:
        for node, _, _ in BOXES:
            requests.put(f"{consul_server.address}/v1/agent/service/deregister/maintenance-agent:{environment}:{node}",
                         timeout=5).raise_for_status()


def _argv(consul: ConsulAgentProcess, environment: str, *args: str) -> list[str]:
    return [*script_argv("maintctl"), "--consul", consul.address, "--env", environment, "--tz", "UTC", *args]


def _row(lines: list[str], node: str) -> str:
    [line] = [line for line in lines if line.split(" ", 1)[0] == node]
    return line


def _shell_env() -> dict[str, str]:
    return {k: v for k, v in script_env().items() if k in ("PYTHONPATH", "PATH", "HOME", "LANG", "LC_ALL")}


@pytest.mark.parametrize("width", [80, 160])
def test_status_and_the_dry_run_in_a_real_terminal(consul_server: ConsulAgentProcess, fleet_mid_entry: str, tmp_path: Path,
                                                   width: int) -> None:
    env = _shell_env()
    with terminal(tmp_path / "tmux", width) as screen:
        lines, code = screen.run(_argv(consul_server, fleet_mid_entry, "status"), env)
        assert code == 1, lines  # not converged
        assert all(len(line) <= width for line in lines)
        for node, _, state in BOXES:
            assert state in _row(lines, node).split(), lines  # name and state whole, on the box's own line
        text = "\n".join(lines)
        assert text.count("Access is denied") == 1, text  # the shared error once, not on every row
        assert "error 1" in _row(lines, "worker-2-long-hostname.a") and "error 1" in _row(lines, "worker-2-long-hostname.b")
        assert len(lines) <= 14, text
        if width >= 160:
            assert "2029-12-31 22:01:02" in _row(lines, "edge-1")  # full dates when there is room
        assert "maintena\n" not in text and "2029-12-\n" not in text

        lines, code = screen.run(_argv(consul_server, fleet_mid_entry, "off", "--dry-run"), env)
        assert code == 0, lines
        assert all(len(line) <= width for line in lines)
        for node, _, _ in BOXES:  # two boxes sharing a long prefix stay apart: each name whole, once, with what it will do
            [row] = [line for line in lines if re.search(rf"(^|\s){re.escape(node)}(\s|$)", line)]
            assert "go active" in row, lines

        lines, code = screen.run(_argv(consul_server, fleet_mid_entry, "wait", "--timeout", "3s"), env)
        assert code == 1, lines
        assert all(len(line) <= width for line in lines)
        text = "\n".join(lines)
        for node in ("worker-2-long-hostname.a", "worker-2-long-hostname.b"):  # shown at once, with role and step, once each
            assert text.count(f"✗ error {node} [worker] worker-services:") == 1, text
        assert any("entering worker" in line and "0/2" in line for line in lines), text  # the progress bars stay
        assert "timed out after 3s: entering: edge done, web done, worker 0/2" in text

        lines, code = screen.run(_argv(consul_server, fleet_mid_entry, "history"), env)
        assert code == 0 and all(len(line) <= width for line in lines), lines
        [row] = [line for line in lines if "alice" in line]
        assert ("2029-12-31 22:00:00" if width >= 160 else "12-31 22:00") in row and "open" in row.split()

        lines, code = screen.run(_argv(consul_server, fleet_mid_entry, "--help"), env)
        assert code == 0 and all(len(line) <= width for line in lines)
        assert any(line.split()[:1] == ["release"] and "dead box" in line for line in lines), lines


def test_piped_output_follows_the_columns_variable(consul_server: ConsulAgentProcess, fleet_mid_entry: str) -> None:
    for columns in ("80", "160"):
        result = run_script("maintctl", "--consul", consul_server.address, "--env", fleet_mid_entry, "--tz", "UTC", "status",
                            env={"COLUMNS": columns})
        assert result.returncode == 1, result.stderr
        lines = result.stdout.rstrip("\n").split("\n")
        assert max(len(line) for line in lines) <= int(columns)
        assert result.stdout.count("Access is denied") == 1
        for node, _, state in BOXES:
            assert node in result.stdout and state in result.stdout
    default = run_script("maintctl", "--consul", consul_server.address, "--env", fleet_mid_entry, "status")
    assert max(len(line) for line in default.stdout.splitlines()) <= 160
