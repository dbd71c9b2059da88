"""Scheduled start with a real Consul and real agents: on time, not before, withdrawable, restart-proof."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from demo.harness.consul import ConsulAgentProcess
from demo.harness.processes import wait_until
from tests.fixtures.windows import WindowFleet, window_fleet


def _schedule(consul: ConsulAgentProcess, environment: str, ahead: float) -> tuple[int, datetime]:
    starts_at = datetime.now(UTC) + timedelta(seconds=ahead)
    doc = {"mode": "maintenance", "reason": "scheduled test", "starts_at": starts_at.isoformat(),
           "ends_at": (starts_at + timedelta(minutes=30)).isoformat()}
    return consul.kv_put(f"maintenance/{environment}/desired", json.dumps(doc)), starts_at


def _all_scheduled(fleet: WindowFleet, index: int) -> bool:
    statuses = [fleet.status(n) for n in fleet.agents]
    return all(s and s["intent_index"] == index and s["state"] == "active" and (s["blocked_on"] or "").startswith("scheduled for")
               for s in statuses)


def _assert_active_until(fleet: WindowFleet, moment: datetime) -> None:
    while datetime.now(UTC) < moment - timedelta(milliseconds=50):
        states = fleet.states()
        assert set(states.values()) == {"active"}, f"a box moved before starts_at: {states}"
        time.sleep(0.05)


def _entered_at(status: dict) -> datetime:
    return datetime.fromisoformat(status["since"])


def test_fleet_enters_after_starts_at_and_not_before(consul_server: ConsulAgentProcess, environment: str, tmp_path: Path) -> None:
    with window_fleet(consul_server, environment, tmp_path) as fleet:
        fleet.add("web-1", ["web"])
        fleet.add("worker-1", ["worker"])
        fleet.wait_states("active")
        index, starts_at = _schedule(consul_server, environment, 2.0)
        wait_until(lambda: _all_scheduled(fleet, index), 2.0, what="every box scheduled")
        _assert_active_until(fleet, starts_at)
        statuses = fleet.wait_states("maintenance", timeout=15, intent_index=index)
        assert not (tmp_path / "worker-1.svc.running").exists()
        web, worker = _entered_at(statuses["web-1"]), _entered_at(statuses["worker-1"])
        assert starts_at <= web <= worker, (starts_at, web, worker)
        assert (worker - starts_at).total_seconds() < 3.0


def test_withdrawing_before_the_start_leaves_every_box_active(consul_server: ConsulAgentProcess, environment: str,
                                                             tmp_path: Path) -> None:
    with window_fleet(consul_server, environment, tmp_path) as fleet:
        fleet.add("web-1", ["web"])
        fleet.add("worker-1", ["worker"])
        fleet.wait_states("active")
        index, starts_at = _schedule(consul_server, environment, 2.0)
        wait_until(lambda: _all_scheduled(fleet, index), 2.0, what="every box scheduled")
        off = consul_server.kv_put(f"maintenance/{environment}/desired", "active")
        fleet.wait_states("active", intent_index=off, timeout=2.0)
        for agent in fleet.agents.values():
            assert agent.windows.scheduled() == {}
        _assert_active_until(fleet, starts_at + timedelta(seconds=1.5))
        assert (tmp_path / "worker-1.svc.running").exists()
        assert all(s and not s["blocked_on"] for s in (fleet.status(n) for n in fleet.agents))


def test_an_agent_restarted_between_scheduling_and_start_enters_on_time(consul_server: ConsulAgentProcess, environment: str,
                                                                        tmp_path: Path) -> None:
    with window_fleet(consul_server, environment, tmp_path) as fleet:
        fleet.add("web-1", ["web"])
        fleet.add("worker-1", ["worker"])
        fleet.wait_states("active")
        # Far enough ahead for what a restart may take: its status key went with the old session, and Consul keeps
        # the old /healthz check critical until the check's next run (every TTL/4), so the new session may wait that long.
        index, starts_at = _schedule(consul_server, environment, 8.0)
        wait_until(lambda: _all_scheduled(fleet, index), 2.0, what="every box scheduled")
        restarted = fleet.restart("worker-1")
        wait_until(lambda: "window-start" in restarted.windows.scheduled(), 2.0, what="the restarted agent re-armed the start")
        # No key is not a move, so wait for the new one before judging (the promise: back within one session TTL).
        wait_until(lambda: fleet.status("worker-1") is not None, 6.0, what="the restarted agent's status")
        _assert_active_until(fleet, starts_at)
        statuses = fleet.wait_states("maintenance", timeout=15, intent_index=index)
        worker = _entered_at(statuses["worker-1"])
        assert starts_at <= worker and (worker - starts_at).total_seconds() < 3.0
