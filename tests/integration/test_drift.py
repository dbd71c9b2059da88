"""Drift on a settled box, with real agents: a real supervisord, the systemd stand-in, a real HAProxy.

Every agent runs with ``resync_seconds = 300``: whatever is noticed within
seconds here was noticed by the local drift watch (``drift_check_seconds``),
not by the reconciler's periodic pass. States are read back independently
(``supervisorctl``, the stand-in's unit file, HAProxy's admin socket).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from agent.clients.haproxy import HAProxyRuntime, write_map_file
from agent.daemon.app import Agent
from demo.harness.agents import agent_doc, metric, node_in_maintenance, start_agent, status_of, wait_for_status
from demo.harness.consul import ConsulAgentProcess
from demo.harness.haproxy import HAProxyUnderTest, LoopbackBackend, edge_section
from demo.harness.processes import wait_until
from demo.harness.supervisor import Supervisord
from tests.fixtures.maintctl import maintctl
from tests.fixtures.supervisor import supervisord  # noqa: F401
from tests.integration.test_systemd_backend import FakeSystemd

DRIFT_CHECK = 1.0
# The documented bound: one drift-check interval, then the repair itself (a supervisord stop
# takes up to ~1 s); the rest is headroom for a loaded 2-core machine.
BOUND = DRIFT_CHECK + 6.0
WORKERS = ["alpha", "beta", "pool"]


def _doc(consul: ConsulAgentProcess, environment: str, node: str, roles: list[str], state_dir: Path, **tables: object) -> dict:
    doc = agent_doc(consul.address, environment, node, roles, state_dir, **tables)
    doc["agent"].update({"resync_seconds": 300, "drift_check_seconds": DRIFT_CHECK})
    return doc


def _repairs(agent: Agent, role: str, step: str) -> float:
    line = metric(agent, f'maintenance_drift_repairs_total{{role="{role}",step="{step}"}}')
    return float(line.split()[-1]) if line else 0.0


def _worker(consul: ConsulAgentProcess, environment: str, sup: Supervisord, tmp_path: Path, drift: str) -> Agent:
    worker = {"backend": "supervisor", "services": WORKERS, "supervisor": {"url": sup.unix_url, "holds_check": False}, "timeout_seconds": 20, "drift": drift}
    return start_agent(_doc(consul, environment, "worker-1", ["worker"], tmp_path / "state", worker=worker))


def _enter(consul: ConsulAgentProcess, environment: str, node: str) -> int:
    index = consul.kv_put(f"maintenance/{environment}/desired", "maintenance")
    wait_for_status(consul.address, environment, node, state="maintenance", intent_index=index, timeout=30)
    time.sleep(2 * DRIFT_CHECK)  # the reconciler's own pass right after settling is over: what follows is the drift watch's
    return index


def test_worker_started_by_hand_in_the_window_is_stopped_again_and_after_it_nothing_that_should_run_is_touched(
        supervisord: Supervisord, consul_server: ConsulAgentProcess, environment: str, tmp_path: Path) -> None:
    before = supervisord.running()
    agent = _worker(consul_server, environment, supervisord, tmp_path, "repair")
    try:
        _enter(consul_server, environment, "worker-1")
        assert not {"alpha:alpha", "beta:beta", "pool:pool_a", "pool:pool_b"} & supervisord.running()

        assert supervisord.ctl("start", "alpha").returncode == 0  # an operator, or a configuration-management run
        started = time.monotonic()
        wait_until(lambda: supervisord.states()["alpha:alpha"] != "RUNNING", BOUND, what="alpha stopped again")
        assert time.monotonic() - started < BOUND
        wait_until(lambda: _repairs(agent, "worker", "worker-services") == 1.0, BOUND, what="the repair counted")
        assert status_of(consul_server.address, environment, "worker-1")["drift"] is None

        left = consul_server.kv_put(f"maintenance/{environment}/desired", "active")
        wait_for_status(consul_server.address, environment, "worker-1", state="active", intent_index=left, timeout=30)
        assert supervisord.running() == before
        # gamma did not run before the window: starting it now is nobody's drift.
        assert supervisord.ctl("start", "gamma").returncode == 0
        time.sleep(4 * DRIFT_CHECK)
        assert supervisord.running() == before | {"gamma:gamma"}, "after the window nothing that should run is stopped"
        assert _repairs(agent, "worker", "worker-services") == 1.0
        # beta ran before the window: stopped within the hold after it, it is started again.
        assert supervisord.ctl("stop", "beta").returncode == 0
        wait_until(lambda: supervisord.states()["beta:beta"] == "RUNNING", BOUND, what="beta running again")
        wait_until(lambda: _repairs(agent, "worker", "worker-services") == 2.0, BOUND, what="the second repair counted")
    finally:
        agent.stop()


def test_with_drift_report_a_worker_run_on_purpose_is_left_running_and_shown(
        supervisord: Supervisord, consul_server: ConsulAgentProcess, environment: str, tmp_path: Path) -> None:
    agent = _worker(consul_server, environment, supervisord, tmp_path, "report")
    try:
        _enter(consul_server, environment, "worker-1")
        assert "alpha:alpha" not in supervisord.running(), "report only applies to drift: entering still stops every worker"
        assert maintctl(consul_server, environment, "status").exit_code == 0

        assert supervisord.ctl("start", "alpha").returncode == 0
        status = wait_until(lambda: (s := status_of(consul_server.address, environment, "worker-1")) and s["drift"] and s, BOUND,
                            what="drift in the status")
        assert status["drift"] == "worker/worker-services: alpha:alpha running"
        assert status["state"] == "maintenance"
        time.sleep(3 * DRIFT_CHECK)
        assert supervisord.states()["alpha:alpha"] == "RUNNING", "reported, not repaired"
        assert _repairs(agent, "worker", "worker-services") == 0.0
        assert 'maintenance_drift_reported{role="worker",step="worker-services"} 1.0' in metric(agent, "maintenance_drift_reported")
        shown = maintctl(consul_server, environment, "status")
        assert shown.exit_code == 1 and "drift: worker/worker-services: alpha:alpha running" in shown.output
        as_json = maintctl(consul_server, environment, "status", "--json")
        assert as_json.exit_code == 1 and '"worker-1: worker/worker-services: alpha:alpha running"' in as_json.output

        assert supervisord.ctl("stop", "alpha").returncode == 0  # the operator is done with it
        wait_until(lambda: status_of(consul_server.address, environment, "worker-1")["drift"] is None, BOUND, what="drift gone")
        assert maintctl(consul_server, environment, "status").exit_code == 0
    finally:
        agent.stop()


@pytest.fixture
def systemd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeSystemd:
    return FakeSystemd.on_path(tmp_path, monkeypatch, {
        "report.timer": {"active": "active", "enabled": "enabled", "triggers": "report.service"},
        "report.service": {"active": "inactive", "enabled": "static"},
        "cleanup.timer": {"active": "active", "enabled": "enabled", "triggers": "cleanup.service"},
        "cleanup.service": {"active": "inactive", "enabled": "static"},
    }, holds_dir=tmp_path / "state" / "holds")


def test_job_started_by_hand_in_the_window_is_stopped_again(systemd: FakeSystemd, consul_server: ConsulAgentProcess,
                                                            environment: str, tmp_path: Path) -> None:
    scheduler = {"backend": "systemd", "jobs": ["report.timer", "cleanup.timer"], "drain_timeout_seconds": 5, "timeout_seconds": 20}
    agent = start_agent(_doc(consul_server, environment, "scheduler-1", ["scheduler"], tmp_path / "state", scheduler=scheduler))
    try:
        _enter(consul_server, environment, "scheduler-1")
        assert systemd.held() == {"report.timer", "cleanup.timer"}
        assert {name: u["active"] for name, u in systemd.units().items() if name.endswith(".timer")} == {
            "report.timer": "inactive", "cleanup.timer": "inactive"}

        systemctl = str(systemd.directory / "systemctl")
        assert subprocess.run([systemctl, "start", "report.timer"], timeout=10).returncode == 0
        systemd.forget_calls()
        started = time.monotonic()
        wait_until(lambda: systemd.units()["report.timer"]["active"] == "inactive", BOUND, what="report.timer stopped again")
        assert time.monotonic() - started < BOUND
        assert "stop report.timer" in systemd.calls()
        assert not any(c.endswith("cleanup.timer") and c.split()[0] == "stop" for c in systemd.calls())
        wait_until(lambda: _repairs(agent, "scheduler", "scheduler-jobs") == 1.0, BOUND, what="the repair counted")

        left = consul_server.kv_put(f"maintenance/{environment}/desired", "active")
        wait_for_status(consul_server.address, environment, "scheduler-1", state="active", intent_index=left, timeout=30)
        assert systemd.held() == set()
        assert {name: (u["active"], u["enabled"]) for name, u in systemd.units().items() if name.endswith(".timer")} == {
            "report.timer": ("active", "enabled"), "cleanup.timer": ("active", "enabled")}
        assert not [c for c in systemd.calls() if c.split()[0] in ("enable", "disable")], "unit files are never touched"
    finally:
        agent.stop()


@pytest.fixture
def hap(tmp_path: Path) -> Iterator[HAProxyUnderTest]:
    with LoopbackBackend() as backend:
        proxy = HAProxyUnderTest(tmp_path / "haproxy", backend.port)
        try:
            yield proxy.start()
        finally:
            proxy.stop()


def test_map_reset_by_hand_is_repaired_within_the_drift_check_bound(hap: HAProxyUnderTest, consul_server: ConsulAgentProcess,
                                                                    environment: str, tmp_path: Path) -> None:
    edge = edge_section(hap).model_dump(mode="json")
    agent = start_agent(_doc(consul_server, environment, "edge-1", ["edge"], tmp_path / "state", edge=edge))
    runtime = HAProxyRuntime(hap.admin_socket, timeout=2)
    try:
        _enter(consul_server, environment, "edge-1")
        assert runtime.show_map(hap.map_file)["state"] == "on"

        # A configuration-management run re-ships the map with `state off` and tells HAProxy.
        write_map_file(hap.map_file, {"state": "off"}, "shipped by configuration management")
        runtime.replace_map(hap.map_file, {"state": "off"})
        started = time.monotonic()
        wait_until(lambda: runtime.show_map(hap.map_file).get("state") == "on", BOUND, what="the live map back to state on")
        took = time.monotonic() - started
        assert took < BOUND, f"repaired after {took:.1f}s"
        wait_until(lambda: _repairs(agent, "edge", "edge-traffic") == 1.0, BOUND, what="the repair counted")
        wait_until(lambda: "state on" in hap.map_file.read_text(), 5, what="the map file back to state on")
    finally:
        agent.stop()


def test_node_maintenance_disabled_by_hand_in_the_window_is_set_again_within_one_resync(
        own_consul: ConsulAgentProcess, environment: str, tmp_path: Path) -> None:
    """Node maintenance is a Consul request, so the reconciler's pass (``resync_seconds``) sees it, not the drift watch."""
    doc = _doc(own_consul, environment, "web-d", ["web"], tmp_path / "state")
    doc["agent"]["resync_seconds"] = 3
    agent = start_agent(doc)
    try:
        _enter(own_consul, environment, "web-d")
        assert node_in_maintenance(own_consul.address)
        requests.put(f"{own_consul.address}/v1/agent/maintenance?enable=false", timeout=5).raise_for_status()  # `consul maint -disable`
        wait_until(lambda: node_in_maintenance(own_consul.address), 3 + 6.0, what="node maintenance set again")
        wait_until(lambda: _repairs(agent, "web", "consul-node-maintenance") == 1.0, 5, what="the repair counted")

        left = own_consul.kv_put(f"maintenance/{environment}/desired", "active")
        wait_for_status(own_consul.address, environment, "web-d", state="active", intent_index=left, timeout=30)
        assert not node_in_maintenance(own_consul.address)
    finally:
        agent.stop()
        requests.put(f"{own_consul.address}/v1/agent/maintenance?enable=false", timeout=5)
