"""One web box against a real Consul agent: flip, report, metrics, kill, restart, outage."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests

from demo.harness.agents import AgentProcess, agent_doc, metric, node_in_maintenance, start_agent, status_of, wait_for_status
from demo.harness.consul import ConsulAgentProcess
from demo.harness.processes import wait_until


def test_flip_puts_the_node_into_maintenance_and_back(own_consul: ConsulAgentProcess, environment: str, tmp_path: Path) -> None:
    consul = own_consul
    agent = start_agent(agent_doc(consul.address, environment, "web-1", ["web"], tmp_path / "state"))
    try:
        wait_for_status(consul.address, environment, "web-1", state="active")
        services = requests.get(f"{consul.address}/v1/agent/services", timeout=5).json()
        service = services[f"maintenance-agent:{environment}:web-1"]
        assert set(service["Tags"]) == {f"env:{environment}", "role:web"}
        assert service["Meta"]["order"] == "edge,web,worker,scheduler", "maintctl shows the fleet in the order its agents gate by"

        index = consul.kv_put(f"maintenance/{environment}/desired", '{"mode": "maintenance", "reason": "SQL-A patch"}')
        status = wait_for_status(consul.address, environment, "web-1", state="maintenance")
        assert status["intent_index"] == index and status["roles"] == ["web"] and status["version"]
        checks = requests.get(f"{consul.address}/v1/agent/checks", timeout=5).json()
        assert "SQL-A patch" in checks["_node_maintenance"]["Notes"]
        assert 'maintenance_agent_state{maintenance_agent_state="maintenance"} 1.0' in metric(agent, "maintenance_agent_state")

        index = consul.kv_put(f"maintenance/{environment}/desired", "active")
        status = wait_for_status(consul.address, environment, "web-1", state="active", intent_index=index)
        assert not node_in_maintenance(consul.address)
        assert 'maintenance_agent_state{maintenance_agent_state="active"} 1.0' in metric(agent, "maintenance_agent_state")
        health = requests.get(f"http://127.0.0.1:{agent.metrics_server.port}/healthz", timeout=5)
        assert health.status_code == 200 and "state=active" in health.text
    finally:
        agent.stop()
    assert status_of(consul.address, environment, "web-1") is None  # clean stop releases the session


def test_malformed_intent_changes_nothing(consul_server: ConsulAgentProcess, environment: str, tmp_path: Path) -> None:
    agent = start_agent(agent_doc(consul_server.address, environment, "web-g", ["web"], tmp_path / "state"))
    key = f"maintenance/{environment}/desired"
    try:
        index = consul_server.kv_put(key, "on")
        wait_for_status(consul_server.address, environment, "web-g", state="maintenance", intent_index=index)
        for garbage in ["of", '{"mode": "off", "extra": 1}', "", '{"mode": "off"'] :
            bad = consul_server.kv_put(key, garbage)
            status = wait_until(lambda bad=bad: (s := status_of(consul_server.address, environment, "web-g")) and s["intent_error"]
                                and f"intent {bad} refused" in s["intent_error"] and s, 10, what="refusal")
            assert status["state"] == "maintenance" and status["intent_index"] == index
        assert "maintenance_intent_errors_total 4.0" in metric(agent, "maintenance_intent_errors_total")
    finally:
        agent.stop()


@pytest.mark.slow
def test_sigkill_makes_the_status_disappear_and_restart_converges(own_consul: ConsulAgentProcess, environment: str, tmp_path: Path) -> None:
    consul = own_consul
    doc = agent_doc(consul.address, environment, "web-k", ["web"], tmp_path / "state")
    proc = AgentProcess(doc, tmp_path / "agent").start()
    try:
        wait_for_status(consul.address, environment, "web-k", state="active", timeout=30)
        index = consul.kv_put(f"maintenance/{environment}/desired", "maintenance")
        wait_for_status(consul.address, environment, "web-k", state="maintenance", intent_index=index)
        proc.kill()
        killed = time.monotonic()
        # Session TTL 10 s; Consul may enforce it up to 2x late.
        wait_until(lambda: status_of(consul.address, environment, "web-k") is None, 30, interval=0.2, what="status key to vanish")
        gone_after = time.monotonic() - killed
        assert gone_after <= 2 * 10 + 5
        assert node_in_maintenance(consul.address)  # the box stays where it was

        proc = AgentProcess(doc, tmp_path / "agent-restarted").start()
        status = wait_for_status(consul.address, environment, "web-k", state="maintenance", intent_index=index, timeout=30)
        assert status["error"] is None
        assert '"step": "consul-node-maintenance"' not in proc.log()  # nothing toggled twice
    finally:
        proc.stop()


@pytest.mark.slow
def test_restart_mid_transition_acts_once(own_consul: ConsulAgentProcess, environment: str, tmp_path: Path) -> None:
    """Killed after the node went into maintenance but before it reported: the restart only reports."""
    consul = own_consul
    doc = agent_doc(consul.address, environment, "web-m", ["web"], tmp_path / "state")
    index = consul.kv_put(f"maintenance/{environment}/desired", "maintenance")
    requests.put(f"{consul.address}/v1/agent/maintenance?enable=true&reason=maintenance-agent:%20before-crash", timeout=5).raise_for_status()
    (tmp_path / "state").mkdir()
    (tmp_path / "state/state.json").write_text(
        json.dumps({"machine": {"state": "entering", "since": "2026-01-01T00:00:00+00:00", "intent_index": index, "progress": {"web": "entering"}}}))
    proc = AgentProcess(doc, tmp_path / "agent").start()
    try:
        wait_for_status(consul.address, environment, "web-m", state="maintenance", intent_index=index, timeout=30)
        checks = requests.get(f"{consul.address}/v1/agent/checks", timeout=5).json()
        assert checks["_node_maintenance"]["Notes"] == "maintenance-agent: before-crash"  # not toggled again
        acted = [line for line in proc.log().splitlines() if "step acting" in line]
        assert len(acted) == 1 and '"step": "flag-file"' in acted[0]  # only the missing action ran
    finally:
        proc.stop()


@pytest.mark.slow
def test_consul_outage_holds_state_and_recovers(own_consul: ConsulAgentProcess, environment: str, tmp_path: Path) -> None:
    consul = own_consul
    agent = start_agent(agent_doc(consul.address, environment, "web-o", ["web"], tmp_path / "state"))
    key = f"maintenance/{environment}/desired"
    try:
        index = consul.kv_put(key, "maintenance")
        wait_for_status(consul.address, environment, "web-o", state="maintenance", intent_index=index)
        consul.stop()
        wait_until(lambda: "maintenance_consul_up 0.0" in metric(agent, "maintenance_consul_up"), 20, what="consul_up 0")
        before = agent.watcher.requests
        time.sleep(8)
        during = agent.watcher.requests - before
        assert during <= 8, f"{during} requests in 8 s while Consul was down: not backing off"
        assert agent.reconciler.state.value == "maintenance"
        consul.start()  # a dev agent comes back empty: the intent is gone
        wait_until(lambda: "maintenance_consul_up 1.0" in metric(agent, "maintenance_consul_up"), 40, what="consul_up 1")
        status = wait_until(lambda: (s := status_of(consul.address, environment, "web-o")) and "intent missing" in (s["intent_error"] or "") and s,
                            30, what="status to report the missing intent")
        assert status["state"] == "maintenance"  # a vanished key never restores traffic by itself
        index = consul.kv_put(key, "active")
        wait_for_status(consul.address, environment, "web-o", state="active", intent_index=index, timeout=30)
    finally:
        agent.stop()


def test_node_maintenance_set_by_someone_else_is_left_alone(own_consul: ConsulAgentProcess, environment: str, tmp_path: Path) -> None:
    consul = own_consul
    agent = start_agent(agent_doc(consul.address, environment, "web-x", ["web"], tmp_path / "state"))
    try:
        wait_for_status(consul.address, environment, "web-x", state="active")
        requests.put(f"{consul.address}/v1/agent/maintenance?enable=true&reason=disk%20swap", timeout=5).raise_for_status()
        time.sleep(2 * 2 + 1)  # two resyncs (resync_seconds = 2): no "drift repair" of someone else's decision
        assert node_in_maintenance(consul.address)
        index = consul.kv_put(f"maintenance/{environment}/desired", "maintenance")
        wait_for_status(consul.address, environment, "web-x", state="maintenance", intent_index=index)
        index = consul.kv_put(f"maintenance/{environment}/desired", "active")
        wait_for_status(consul.address, environment, "web-x", state="active", intent_index=index)
        checks = requests.get(f"{consul.address}/v1/agent/checks", timeout=5).json()
        assert checks["_node_maintenance"]["Notes"] == "disk swap"  # still theirs, still on
    finally:
        agent.stop()
