"""maintctl imports only what a command needs: what `--help`, `status` and `on --dry-run` load, in a fresh interpreter.

Timing lives in bench/maintctl_startup.py; this pins the cause (the modules
that cost tens of milliseconds) so a stray top-level import fails a test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from agent.clients.consul import ConsulGateway, ttl_check
from agent.core.model import State, Status
from demo.harness.consul import ConsulAgentProcess
from demo.harness.processes import PROJECT

HEAVY = ("pydantic", "consul", "requests", "urllib3", "rich", "structlog", "prometheus_client", "http.client", "email", "ssl")
TRANSPORT = ["email", "http.client", "ssl"]  # the one Consul transport: http.client, which imports email and ssl itself
PROBE = """
import json, sys
heavy = json.loads(sys.argv[2])
sys.argv = ["maintctl", *json.loads(sys.argv[1])]
from agent.cli.maintctl import main
try:
    main()
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "loaded": sorted(m for m in heavy if m in sys.modules)}), file=sys.stderr)
"""


def loaded_by(args: list[str], env: dict[str, str]) -> tuple[int, list[str]]:
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args), json.dumps(HEAVY)], capture_output=True, text=True,
                          cwd=PROJECT, env={**os.environ, "PYTHONPATH": str(PROJECT), **env}, timeout=60, check=False)
    report = json.loads(done.stderr.strip().splitlines()[-1])
    return report["code"], report["loaded"]


def test_help_loads_no_client_library_and_no_renderer() -> None:
    code, loaded = loaded_by(["--help"], {})
    assert code == 0
    assert loaded == []


@pytest.mark.parametrize("args", [["status"], ["on", "--reason", "probe", "--for", "30m", "--dry-run"]])
def test_status_and_dry_run_load_only_the_transport_and_no_renderer(args: list[str], consul_server: ConsulAgentProcess,
                                                              environment: str) -> None:
    index = consul_server.kv_put(f"maintenance/{environment}/desired", "active")
    ConsulGateway(consul_server.address).register_agent_service(
        f"maintenance-agent:{environment}:box-1", [f"env:{environment}", "role:web"], {"box": "box-1"},
        check=ttl_check(f"maintenance-agent:{environment}:box-1:ttl", 600))
    status = Status(node="box-1", roles=("web",), state=State.ACTIVE, intent_index=index, since=datetime.now(UTC))
    consul_server.kv_put(f"maintenance/{environment}/status/box-1", status.to_json())
    code, loaded = loaded_by(args, {"CONSUL_HTTP_ADDR": consul_server.address, "MAINTCTL_ENV": environment})
    assert code == 0
    assert loaded == TRANSPORT, "reads go through the transport alone (no py-consul, no requests); the views are plain text"
