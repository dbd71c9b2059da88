"""Consul answering 500 / 429 / 503, or accepting connections and never replying.

The agent sits behind ``FaultyProxy`` (the only way it reaches Consul), so
every request it sends is counted where Consul would see it. While the fault
lasts, the intent is flipped behind the agent's back: nothing may change
(state, node maintenance), ``consul_up`` must read 0, the request rate must
stay bounded; when the fault ends the agent converges to the new intent.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bench.figures import record
from demo.harness.agents import agent_doc, metric, node_in_maintenance, start_agent, wait_for_status
from demo.harness.consul import ConsulAgentProcess
from demo.harness.processes import wait_until
from tests.fixtures.faulty_proxy import FaultyProxy

FAULT_WINDOW = 6.0
# What one agent may send in FAULT_WINDOW seconds of failures: the desired-key
# watcher (backoff 0.5 s → 30 s, first retry spread over 2 s) and the status
# reporter (backoff 0.5 s → ttl/5) each give up a handful of tries; a naive
# client retrying every 100 ms would send 120.
MAX_REQUESTS_IN_WINDOW = 24


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["500", "429", "503", "hang"])
def test_consul_fault_changes_nothing_bounds_requests_and_recovers(fault: str, own_consul: ConsulAgentProcess, environment: str,
                                                                    tmp_path: Path) -> None:
    consul = own_consul
    proxy = FaultyProxy(consul.address).start()
    node = f"web-{fault}"
    doc = agent_doc(proxy.address, environment, node, ["web"], tmp_path / "state")
    doc["consul"].update({"wait_seconds": 5, "request_timeout_seconds": 1.0})
    agent = start_agent(doc)
    key = f"maintenance/{environment}/desired"
    try:
        entered = consul.kv_put(key, "maintenance")
        wait_for_status(consul.address, environment, node, state="maintenance", intent_index=entered)

        proxy.set_mode(fault)
        flipped = consul.kv_put(key, "active")  # behind the agent's back, while it cannot read
        wait_until(lambda: "maintenance_consul_up 0.0" in metric(agent, "maintenance_consul_up"), 15, what="consul_up 0")
        start = time.monotonic()
        time.sleep(FAULT_WINDOW)
        sent = len(proxy.requests_between(start, time.monotonic()))
        assert sent <= MAX_REQUESTS_IN_WINDOW, f"{sent} requests in {FAULT_WINDOW}s of {fault}: not backing off"
        assert agent.reconciler.state.value == "maintenance", "a fault must not move the box"
        assert node_in_maintenance(consul.address)
        assert "maintenance_consul_up 0.0" in metric(agent, "maintenance_consul_up")
        for watch in ("intent", "own-status"):  # both of the idle agent's watches failed, and each failure was counted
            counted = agent.metrics.registry.get_sample_value("maintenance_watch_errors_total", {"watch": watch})
            assert counted is not None and counted >= 1, f"{watch} watch: {counted} errors counted during {fault}"

        proxy.set_mode("pass")
        status = wait_for_status(consul.address, environment, node, state="active", intent_index=flipped, timeout=45)
        assert not node_in_maintenance(consul.address)
        wait_until(lambda: "maintenance_consul_up 1.0" in metric(agent, "maintenance_consul_up"), 15, what="consul_up 1")
        desired_reads = [s for s in proxy.log if s.method == "GET" and s.path.startswith(f"/v1/kv/{key}")]
        assert desired_reads and all("consistent" in s.path for s in desired_reads), "the intent is read with ?consistent"
        lost = 0 if status["state"] == "active" else 1
        record(f"consul {fault}", faults=1, actions_lost=lost, detail=f"{sent} requests in {FAULT_WINDOW:.0f}s of fault")
    finally:
        agent.stop()
        proxy.stop()
