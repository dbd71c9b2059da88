"""An idle agent's Consul traffic: two blocking queries per wait, nothing to keep its session alive, loss still noticed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from demo.harness.agents import agent_doc, start_agent, status_of, wait_for_status
from demo.harness.consul import ConsulAgentProcess
from demo.harness.processes import wait_until
from tests.fixtures.faulty_proxy import FaultyProxy

WAIT = 5  # seconds per blocking query here; 60 by default, which makes the bound 2 requests a minute


@pytest.mark.slow
def test_idle_agent_sends_only_its_two_blocking_queries(consul_server: ConsulAgentProcess, environment: str, tmp_path: Path) -> None:
    proxy = FaultyProxy(consul_server.address).start()
    doc = agent_doc(proxy.address, environment, "web-idle", ["web"], tmp_path / "state")
    doc["consul"]["wait_seconds"] = WAIT
    agent = start_agent(doc)
    try:
        wait_for_status(consul_server.address, environment, "web-idle", state="active")
        # Back to normal, the web role looks at node maintenance once after it starts (ours left on by a lost state
        # file would otherwise stay on); from then on it asks nothing.
        wait_until(lambda: any(seen.path == "/v1/agent/checks" for seen in proxy.log), 3 * doc["agent"]["resync_seconds"] + 5,
                   what="the one node-maintenance check after start")
        time.sleep(1)
        start = len(proxy.log)
        time.sleep(4 * WAIT)
        seen_idle = proxy.log[start:]
        # Every request counts, the local agent's too (in a window node maintenance is checked every resync, locally).
        idle = list(seen_idle)
        paths = {seen.path.split("?")[0] for seen in idle}
        assert paths <= {f"/v1/kv/maintenance/{environment}/desired", f"/v1/kv/maintenance/{environment}/status/web-idle"}, paths
        assert all(seen.method == "GET" and "index=" in seen.path for seen in idle), [s.path for s in idle]
        assert len(idle) <= 2 * 4 + 2, [s.path for s in idle]  # two queries per wait (+ one each in flight at the edges)
    finally:
        agent.stop()
        proxy.stop()


@pytest.mark.slow
def test_a_session_ended_behind_the_agents_back_is_recreated_at_once(consul_server: ConsulAgentProcess, environment: str,
                                                                    tmp_path: Path) -> None:
    agent = start_agent(agent_doc(consul_server.address, environment, "web-lost", ["web"], tmp_path / "state"))
    try:
        wait_for_status(consul_server.address, environment, "web-lost", state="active")
        lost = agent.reporter.session
        requests.put(f"{consul_server.address}/v1/session/destroy/{lost}", timeout=5).raise_for_status()
        ended = time.monotonic()
        wait_until(lambda: (s := status_of(consul_server.address, environment, "web-lost")) and s["state"] == "active"
                   and agent.reporter.session not in (lost, None), 5, interval=0.05, what="the status key back under a new session")
        assert time.monotonic() - ended < 3  # noticed by the query on its own key, not by a renewal
        key = requests.get(f"{consul_server.address}/v1/kv/maintenance/{environment}/status/web-lost", timeout=5).json()[0]
        assert key["Session"] == agent.reporter.session
        checks = requests.get(f"{consul_server.address}/v1/session/info/{key['Session']}", timeout=5).json()[0]["Checks"]
        assert set(checks) == {"serfHealth", f"maintenance-agent:{environment}:web-lost:alive"}  # bound to the HTTP check
    finally:
        agent.stop()
