"""What the agent loads to speak to Consul: the transport, py-consul's API, and no requests, urllib3 or py-consul's own client.

requests and urllib3 cost an agent about 2.3 MB of RSS (``bench/RESULTS.md``);
py-consul's package ``__init__`` would import them through ``consul.std``.
This pins, in a fresh interpreter, that importing the daemon and making a
py-consul call through the gateway loads neither, so a stray top-level
``import requests`` (or ``import consul``) fails a test rather than only a
benchmark.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from demo.harness.processes import PROJECT
from tests.fixtures.raw_http import RawHttpServer, answer

PROBE = """
import json, sys
import agent.cli.agent_main, agent.daemon.app, agent.daemon.local.logs
from agent.clients.consul import ConsulGateway
gateway = ConsulGateway(sys.argv[1], request_timeout=5)
written = gateway.put_key("maintenance/t/desired", "on")   # py-consul's KV API on the transport
session = gateway.create_session("probe", ttl=15)          # and its session API
heavy = ("requests", "urllib3", "consul.std", "consul.base", "http.client")
print(json.dumps({"written": written, "session": session, "loaded": sorted(m for m in heavy if m in sys.modules)}))
"""


@pytest.fixture
def consul() -> Iterator[RawHttpServer]:
    server = RawHttpServer(lambda request: answer(200, b'{"ID": "8c1d"}' if "session" in request.target else b"true")).start()
    try:
        yield server
    finally:
        server.stop()


def test_the_daemon_and_its_consul_calls_load_no_requests(consul: RawHttpServer) -> None:
    done = subprocess.run([sys.executable, "-c", PROBE, consul.address], capture_output=True, text=True, cwd=PROJECT,
                          env={**os.environ, "PYTHONPATH": str(PROJECT)}, timeout=60, check=True)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["written"] is True and report["session"] == "8c1d"
    assert report["loaded"] == ["consul.base", "http.client"], "py-consul's API on the transport, no requests, urllib3 or consul.std"
    assert [r.method for r in consul.requests] == ["PUT", "PUT"]
