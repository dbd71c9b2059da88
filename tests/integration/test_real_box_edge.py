"""An edge box in a real box: Debian's own haproxy.service with the shipped haproxy.cfg and maintenance files.

The agent reaches HAProxy's socket and the map file only through what the
shipped config and ``install-files`` set up (its own operator-level socket in
its own group, the map in its state directory), and a ``systemctl reload
haproxy`` mid-window keeps the maintenance answers.
"""

from __future__ import annotations

import itertools
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.figures import record
from demo.harness.agent_box import AgentBox, edge_config, put_intent, serve_haproxy
from demo.harness.consul import ConsulAgentProcess
from demo.harness.haproxy import JSON_MARKER, LoopbackBackend
from demo.harness.processes import free_port, wait_until
from demo.harness.systemd_box import booted
from tests.fixtures.real_box import box_layer, box_wheels  # noqa: F401

_boxes = itertools.count(1)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def edge_box(box_layer: Path, consul_server: ConsulAgentProcess, environment: str) -> Iterator[tuple[AgentBox, str]]:
    with LoopbackBackend() as backend:
        with booted(f"edge{next(_boxes)}", units=("haproxy.service",), layers=[box_layer]) as box:
            front = f"http://127.0.0.1:{free_port()}"
            agent_box = AgentBox(box, consul_server.address, environment, box.name)
            agent_box.install(edge_config(agent_box, front), enable=False)
            serve_haproxy(box, front, backend.port)
            box.systemctl("enable", "--now", "maintenance-agent")
            agent_box.wait_active()
            agent_box.wait_status(state="active")
            yield agent_box, front


def test_the_agent_switches_debians_haproxy_and_a_reload_mid_window_keeps_it(edge_box: tuple[AgentBox, str]) -> None:
    box, front = edge_box
    sockets = box.box.run("stat", "-c", "%n %A %U %G", "/run/haproxy/admin.sock", "/run/haproxy/maintenance-agent.sock").stdout
    assert sockets.splitlines() == ["/run/haproxy/admin.sock srw-rw---- root haproxy",  # Debian's /run/haproxy is setgid haproxy
                                    "/run/haproxy/maintenance-agent.sock srw-rw---- root maintenance-agent"]
    assert box.box.run("id", "-Gn", "maintenance-agent").stdout.split() == ["maintenance-agent"], "no supplementary group needed"
    on = put_intent(box.consul_address, box.environment, "maintenance")
    box.wait_status(state="maintenance", intent_index=on)
    status, body = get(f"{front}/api/x")
    assert status == 503 and JSON_MARKER in body

    before = box.box.main_pid("haproxy")
    box.box.systemctl("reload", "haproxy")
    wait_until(lambda: box.box.unit_property("haproxy", "ActiveState") == "active", 30, what="haproxy reloaded")
    assert box.box.main_pid("haproxy") == before, "a reload, not a restart"
    for path in ("/", "/api/x"):
        assert get(f"{front}{path}")[0] == 503, f"{path} after the reload"
    assert box.status()["error"] is None  # type: ignore[index]
    record("systemctl reload haproxy mid-window, Debian's haproxy.service in a real box", faults=1, detail="maintenance answers kept")

    off = put_intent(box.consul_address, box.environment, "active")
    box.wait_status(state="active", intent_index=off)
    assert get(f"{front}/")[0] == 200
    box.box.systemctl("reload", "haproxy")
    wait_until(lambda: box.box.unit_property("haproxy", "ActiveState") == "active", 30, what="haproxy reloaded")
    assert get(f"{front}/")[0] == 200


@pytest.mark.slow
def test_the_agents_socket_cannot_disable_a_server(edge_box: tuple[AgentBox, str]) -> None:
    box, _ = edge_box
    script = ("import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect('/run/haproxy/maintenance-agent.sock'); "
              "s.sendall(b'disable server app/app1\\n'); print(s.recv(4096).decode())")
    said = box.box.run("/opt/maintenance-agent/bin/python", "-c", script, user="maintenance-agent").stdout
    assert "Permission denied" in said
