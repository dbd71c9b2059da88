"""Run maintenance agents for tests: in-process objects, or real processes (for SIGKILL)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import requests

from agent.config.plain import plain
from agent.config.schema import AgentConfig, from_mapping
from agent.daemon.app import Agent
from demo.harness.processes import PROJECT, ManagedProcess, wait_until


def agent_doc(consul_address: str, environment: str, node: str, roles: list[str], state_dir: Path, **tables: Any) -> dict:
    doc: dict[str, Any] = {
        "agent": {"node": node, "roles": roles, "environment": environment, "state_dir": str(state_dir),
                  "resync_seconds": 2, "retry_max_seconds": 2},
        "consul": {"address": consul_address, "session_ttl_seconds": 10, "wait_seconds": 30},
        "metrics": {"listen": "127.0.0.1:0"},
    }
    for name, table in tables.items():
        doc.setdefault(name, {}).update(table)
    return doc


def start_agent(doc: dict) -> Agent:
    return Agent(config_of(doc)).start()


def to_toml(doc: dict) -> str:
    """Just enough TOML for test configs (tables of scalars, lists and inline tables)."""
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        raise TypeError(type(v))
    lines = []
    for table, body in doc.items():
        lines.append(f"[{table}]")
        lines += [f"{k} = {value(v)}" for k, v in body.items()]
    return "\n".join(lines) + "\n"


class AgentProcess:
    """``python -m agent run`` as a real process, so a test can SIGKILL it."""

    def __init__(self, doc: dict, workdir: Path):
        self.doc = doc
        self.workdir = workdir
        self.config_path = workdir / f"{doc['agent']['node']}.toml"
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(to_toml(doc))
        self.process: ManagedProcess | None = None

    def start(self) -> AgentProcess:
        env = {"PYTHONPATH": str(PROJECT), "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(self.workdir)}
        import os
        env = {**os.environ, **env, "MALLOC_ARENA_MAX": "2"}  # as the shipped systemd unit sets it
        self.process = ManagedProcess([sys.executable, "-m", "agent", "run", "--config", str(self.config_path)],
                                      self.workdir / f"{self.doc['agent']['node']}.log", env=env, cwd=PROJECT)
        return self

    def stop(self) -> None:
        if self.process:
            self.process.stop()

    def kill(self) -> None:
        if self.process:
            self.process.kill()

    def log(self) -> str:
        return self.process.output() if self.process else ""


def status_of(consul_address: str, environment: str, node: str) -> dict | None:
    r = requests.get(f"{consul_address}/v1/kv/maintenance/{environment}/status/{node}?raw", timeout=5)
    return r.json() if r.status_code == 200 else None


def wait_for_status(consul_address: str, environment: str, node: str, timeout: float = 20.0, **expected: Any) -> dict:
    def matches() -> dict | None:
        s = status_of(consul_address, environment, node)
        return s if s and all(s.get(k) == v for k, v in expected.items()) else None
    return wait_until(matches, timeout, what=f"status of {node} to have {expected}")  # type: ignore[return-value]


def node_in_maintenance(consul_address: str) -> bool:
    return "_node_maintenance" in requests.get(f"{consul_address}/v1/agent/checks", timeout=5).json()


def metric(agent: Agent, name: str) -> str:
    text = requests.get(f"http://127.0.0.1:{agent.metrics_server.port}/metrics", timeout=5).text
    return "\n".join(line for line in text.splitlines() if line.startswith(name))


def config_of(doc: dict) -> AgentConfig:
    """The config as ``maintenance-agent run`` hands it to the daemon: validated, then copied into plain objects."""
    return plain(from_mapping(doc))  # type: ignore[no-any-return]
