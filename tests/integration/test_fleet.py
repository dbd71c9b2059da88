"""End to end on the demo fleet (prod shape, real Consul/HAProxy/supervisord, agent processes).

The order is a safety property, so it is asserted from the agents' own logs:
every step's start and end time, across all boxes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.cli.maintctl import cli as maintctl
from demo.fleet import DemoFleet
from demo.harness.haproxy import http_get
from demo.harness.processes import wait_until

RUNNING_BEFORE = {"billing-worker:billing-worker", "ledger-sync:ledger-sync"}


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[DemoFleet]:
    with DemoFleet(tmp_path / "fleet") as running:
        yield running


def first(events: list[dict], node: str, step: str, event: str) -> object:
    for e in events:
        if e["node"] == node and e.get("step") == step and e["event"] == event:
            return e["at"]
    raise AssertionError(f"no {event!r} of {step} on {node} in the agents' logs")


def last(events: list[dict], nodes: list[str], step: str, event: str) -> object:
    return max(first(events, n, step, event) for n in nodes)


def maintctl_status(fleet: DemoFleet) -> tuple[int, dict]:
    result = CliRunner().invoke(maintctl, ["--consul", fleet.server.address, "--env", fleet.environment, "status", "--json"])
    return result.exit_code, json.loads(result.output)


def test_enter_and_leave_in_order(fleet: DemoFleet) -> None:
    index = fleet.flip({"mode": "maintenance", "reason": "SQL-A patch", "message": "Back at 23:00"})
    fleet.wait_for("maintenance", index, timeout=60)
    entering = fleet.timeline()
    webs, workers = ["web-1", "web-2"], ["worker-1", "worker-2"]
    edge_verified = first(entering, "edge-1", "edge-traffic", "step done")
    for web in webs:
        assert first(entering, web, "consul-node-maintenance", "step acting") > edge_verified
        assert fleet.node_in_maintenance(web)
    for worker in workers:
        assert first(entering, worker, "worker-services", "step acting") > last(entering, webs, "consul-node-maintenance", "step done")
        assert fleet.running_programs(worker) == set()
    assert first(entering, "sched-1", "scheduler-jobs", "step acting") > last(entering, workers, "worker-services", "step done")
    api = http_get(fleet.haproxy.url("/api/payments"))
    assert api.status == 503 and "retry-after" in api.headers and json.loads(api.body)["status"] == "maintenance"
    page = http_get(fleet.haproxy.url("/"))
    assert page.status == 503 and "Back at 23:00" in page.body

    index = fleet.flip("active")
    fleet.wait_for("active", index, timeout=60)
    leaving = [e for e in fleet.timeline() if e["at"] > entering[-1]["at"]]
    assert first(leaving, "sched-1", "scheduler-jobs", "step acting") < first(leaving, "worker-1", "worker-services", "step acting")
    smoke_passed = last(leaving, webs, "smoke-test", "step done")
    for web in webs:
        assert first(leaving, web, "smoke-test", "step acting") > first(leaving, web, "consul-node-maintenance", "step done")
        assert not fleet.node_in_maintenance(web)
    assert first(leaving, "edge-1", "edge-traffic", "step acting") > smoke_passed
    for worker in workers:
        assert first(leaving, worker, "worker-services", "step done") < first(leaving, "web-1", "consul-node-maintenance", "step acting")
        assert fleet.running_programs(worker) == RUNNING_BEFORE  # report-worker was stopped before: still stopped
    assert http_get(fleet.haproxy.url("/api/payments")).status == 200
    code, status = maintctl_status(fleet)
    assert code == 0, status


@pytest.mark.slow
def test_failing_smoke_test_keeps_the_maintenance_page(fleet: DemoFleet) -> None:
    index = fleet.flip("maintenance")
    fleet.wait_for("maintenance", index, timeout=60)
    fleet.fail_web("web-1")
    index = fleet.flip("active")
    fleet.wait_for("active", index, boxes=["sched-1", "worker-1", "worker-2", "web-2"], timeout=60)

    def web1_error() -> str | None:
        status = fleet.statuses()["web-1"]
        return status and status["error"]

    error = wait_until(web1_error, 30, what="web-1 to report its failing smoke test")
    assert f"smoke-test: ui: GET http://{fleet.boxes['web-1'].address}:" in error and "answered 500" in error
    edge = fleet.statuses()["edge-1"]
    assert edge["progress"] == {"edge": "exiting"} and "web-1" in edge["blocked_on"]  # waiting, has not acted
    assert http_get(fleet.haproxy.url("/")).status == 503  # partners and users still see the page
    code, status = maintctl_status(fleet)
    assert code == 1 and "answered 500" in json.dumps(status)

    fleet.fail_web("web-1", failing=False)
    fleet.wait_for("active", index, timeout=60)
    assert http_get(fleet.haproxy.url("/")).status == 200


@pytest.mark.slow
def test_killed_agent_blocks_the_gate_until_restarted_or_released(fleet: DemoFleet) -> None:
    runner = CliRunner()
    base = ["--consul", fleet.server.address, "--env", fleet.environment]
    fleet.kill_agent("web-2")
    result = runner.invoke(maintctl, [*base, "on", "--reason", "SQL-A patch", "--for", "30m", "--by", "oncall"])
    assert result.exit_code == 0, result.output
    index = fleet.server.kv_index(fleet.desired_key)
    fleet.wait_for("maintenance", index, boxes=["edge-1", "web-1"], timeout=60)

    def worker_blocked_on_web2_only() -> str | None:
        status = fleet.statuses()["worker-1"]
        blocked = status and status["blocked_on"]
        return blocked if blocked and blocked.startswith("gate worker: waiting for web-2 (web:") else None

    wait_until(worker_blocked_on_web2_only, 30, what="worker-1 to report the gate waiting for web-2 alone")
    assert fleet.running_programs("worker-1") == RUNNING_BEFORE  # nothing acted past the gate

    fleet.restart_agent("web-2")
    fleet.wait_for("maintenance", index, timeout=60)

    # Now the release: the same box dies while leaving; the operator lets the fleet go on without it.
    fleet.kill_agent("web-2")
    result = runner.invoke(maintctl, [*base, "off", "--reason", "patched", "--by", "oncall"])
    assert result.exit_code == 0, result.output
    index = fleet.server.kv_index(fleet.desired_key)
    fleet.wait_for("active", index, boxes=["sched-1", "worker-1", "worker-2", "web-1"], timeout=60)
    assert "web-2" in (fleet.statuses()["edge-1"]["blocked_on"] or "")
    result = runner.invoke(maintctl, [*base, "release", "web-2", "--reason", "box died during the window", "--by", "oncall"])
    assert result.exit_code == 0, result.output
    released = fleet.server.kv_index(fleet.desired_key)
    fleet.wait_for("active", released, boxes=["edge-1"], timeout=60)
    assert http_get(fleet.haproxy.url("/")).status == 200
    history = runner.invoke(maintctl, [*base, "history", "--json"])
    record = json.loads(history.output)[0]
    assert [(r["node"], r["reason"], r["by"]) for r in record["releases"]] == [("web-2", "box died during the window", "oncall")]


@pytest.mark.slow
def test_change_of_mind_while_entering(fleet: DemoFleet) -> None:
    index = fleet.flip("maintenance")
    wait_until(lambda: any(s and s["state"] != "active" for s in fleet.statuses().values()), 30, interval=0.01, what="entering")
    index = fleet.flip("active")
    fleet.wait_for("active", index, timeout=60)
    for worker in ("worker-1", "worker-2"):
        assert fleet.running_programs(worker) == RUNNING_BEFORE
    for web in ("web-1", "web-2"):
        assert not fleet.node_in_maintenance(web)
    assert http_get(fleet.haproxy.url("/api/payments")).status == 200
    assert http_get(fleet.haproxy.url("/")).status == 200
