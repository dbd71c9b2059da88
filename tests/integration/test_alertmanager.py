"""The alert silence lease against a real Alertmanager and a real Consul: created, extended, removed, self-expiring."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests
import structlog

from agent.clients.alertmanager import AlertmanagerClient
from agent.clients.consul import ConsulGateway
from agent.config.partners import AlertmanagerMatcher
from agent.core.model import Intent, Mode, Role, State
from agent.daemon.app import Agent
from agent.daemon.steps.base import Step, StepContext
from agent.partners.silences import SilenceLease, matchers_for
from demo.harness.agents import config_of
from demo.harness.consul import ConsulAgentProcess
from demo.harness.processes import wait_until
from tests.fixtures.alertmanager import Alertmanager, alertmanager
from tests.fixtures.windows import file_logger, window_fleet

WINDOW = Intent(Mode.MAINTENANCE, 50, reason="SQL-A")


class Box:
    """A controllable edge box: its state, intent, whether the fleet is back, and its clock."""

    def __init__(self) -> None:
        self.state = State.ENTERING
        self.intent: Intent = WINDOW
        self.back = False
        self.now = datetime.now(UTC)


def _lease(consul: ConsulAgentProcess, am: Alertmanager, environment: str, node: str, box: Box, lease: float = 60,
           renew: float = 10) -> SilenceLease:
    return SilenceLease(ConsulGateway(consul.address), f"maintenance/{environment}/silence", AlertmanagerClient(am.url),
                        matchers_for([AlertmanagerMatcher(name="alertname", value="WorkerStopped|JobStale", is_regex=True)], environment),
                        lease, renew, node, "maintenance-agent", box=lambda: (box.state, box.intent),
                        fleet_back=lambda intent: box.back, log=structlog.get_logger(), clock=lambda: box.now)


def _record(consul: ConsulAgentProcess, environment: str) -> dict | None:
    r = requests.get(f"{consul.address}/v1/kv/maintenance/{environment}/silence?raw", timeout=5)
    return r.json() if r.status_code == 200 else None


def _ends(silence: dict) -> datetime:
    return datetime.fromisoformat(silence["endsAt"].replace("Z", "+00:00"))


def test_silence_is_created_once_extended_and_removed(consul_server: ConsulAgentProcess, environment: str, tmp_path: Path) -> None:
    with alertmanager(tmp_path / "am") as am:
        box = Box()
        edge1, edge2 = _lease(consul_server, am, environment, "edge-1", box), _lease(consul_server, am, environment, "edge-2", box)
        edge1.tick()
        edge2.tick()
        record = _record(consul_server, environment)
        assert record and record["holder"] == "edge-1" and record["intent_index"] == 50
        assert len(am.silences()) == 1, "two edge boxes, one silence"
        created = am.silence(record["id"])
        assert created["status"]["state"] == "active"
        assert {(m["name"], m["value"], m["isRegex"]) for m in created["matchers"]} == {
            ("alertname", "WorkerStopped|JobStale", True), ("env", environment, False)}
        first_end = _ends(created)
        assert abs((first_end - box.now).total_seconds() - 60) < 1

        box.state, box.now = State.MAINTENANCE, box.now + timedelta(seconds=5)
        edge2.tick()
        assert _ends(am.silence(record["id"])) == first_end, "not due yet: no write"
        box.now += timedelta(seconds=30)
        edge2.tick()
        extended = am.silence(_record(consul_server, environment)["id"])  # type: ignore[index]
        assert _ends(extended) - first_end >= timedelta(seconds=34)
        assert extended["id"] == record["id"], "extended in place, not replaced"
        assert len([s for s in am.silences() if s["status"]["state"] == "active"]) == 1

        box.state, box.intent = State.ACTIVE, Intent(Mode.ACTIVE, 51)
        edge1.tick()
        assert _record(consul_server, environment) is not None, "the fleet is not back yet: keep it"
        box.back = True
        edge1.tick()
        edge2.tick()
        assert _record(consul_server, environment) is None
        assert [s["status"]["state"] for s in am.silences()] == ["expired"]


def test_a_silence_is_extended_in_place_whatever_the_edge_box_clock_says(consul_server: ConsulAgentProcess, environment: str,
                                                                          tmp_path: Path) -> None:
    """Alertmanager moves a past start to its own clock and extends in place only with the start it holds (to the
    second): a box whose clock is 3 s behind (or whose creation crossed a second) must still make one silence."""
    with alertmanager(tmp_path / "am") as am:
        box = Box()
        box.now = datetime.now(UTC) - timedelta(seconds=3)
        lease = _lease(consul_server, am, environment, "edge-1", box, lease=60, renew=10)
        lease.tick()
        created = _record(consul_server, environment)
        assert created and created["id"]
        for _ in range(3):
            box.now += timedelta(seconds=30)
            lease.tick()
        assert _record(consul_server, environment)["id"] == created["id"], "extended in place"  # type: ignore[index]
        assert len(am.silences()) == 1, [(s["id"], s["status"]["state"]) for s in am.silences()]


def test_a_slow_claimant_is_not_raced_by_a_second_edge_box(consul_server: ConsulAgentProcess, environment: str, tmp_path: Path) -> None:
    """A claim whose silence is not written yet belongs to its claimant for two request timeouts, even with a short renewal."""
    with alertmanager(tmp_path / "am") as am:
        box = Box()
        claimed_at = box.now
        requests.put(f"{consul_server.address}/v1/kv/maintenance/{environment}/silence?cas=0", timeout=5,
                     data=json.dumps({"id": "", "holder": "edge-1", "ends_at": claimed_at.isoformat(), "intent_index": 50}))
        edge2 = _lease(consul_server, am, environment, "edge-2", box, lease=60, renew=0.5)
        box.now = claimed_at + timedelta(seconds=3)  # six renewals, less than two 5 s Alertmanager timeouts: maybe still at work
        edge2.tick()
        assert am.silences() == [] and _record(consul_server, environment)["holder"] == "edge-1"  # type: ignore[index]
        box.now = claimed_at + timedelta(seconds=12)  # the claimant died between claim and write: taken over
        edge2.tick()
        record = _record(consul_server, environment)
        assert record and record["id"] and record["holder"] == "edge-2" and len(am.silences()) == 1


def test_a_silence_nobody_extends_ends_on_its_own(consul_server: ConsulAgentProcess, environment: str, tmp_path: Path) -> None:
    with alertmanager(tmp_path / "am") as am:
        box = Box()
        lease = _lease(consul_server, am, environment, "edge-1", box, lease=2, renew=0.5)
        lease.tick()  # ...and then the holder "crashes": nobody ticks again
        silence_id = _record(consul_server, environment)["id"]  # type: ignore[index]
        assert am.silence(silence_id)["status"]["state"] == "active"
        wait_until(lambda: am.silence(silence_id)["status"]["state"] == "expired", 6, what="the lease to run out")
        box.now = datetime.now(UTC)
        lease.tick()  # a holder back in the window makes a new silence
        assert am.silence(_record(consul_server, environment)["id"])["status"]["state"] == "active"  # type: ignore[index]


def test_edge_agents_silence_the_window_and_unsilence_when_the_fleet_is_back(consul_server: ConsulAgentProcess, environment: str,
                                                                            tmp_path: Path) -> None:
    with alertmanager(tmp_path / "am") as am:
        section = {"url": am.url, "lease_seconds": 60, "renew_seconds": 0.5}
        with window_fleet(consul_server, environment, tmp_path / "fleet", alertmanager=section) as fleet:
            fleet.add("edge-1", ["edge"])
            fleet.add("edge-2", ["edge"])
            fleet.add("worker-1", ["worker"])
            fleet.wait_states("active")
            assert am.silences() == []
            on = consul_server.kv_put(f"maintenance/{environment}/desired", json.dumps({"mode": "maintenance", "reason": "x"}))
            fleet.wait_states("maintenance", intent_index=on)
            record = wait_until(lambda: (r := _record(consul_server, environment)) and r["id"] and r, 5, what="silence created")
            first = _ends(am.silence(record["id"]))  # type: ignore[index]
            wait_until(lambda: _ends(am.silence(_record(consul_server, environment)["id"])) > first, 5,  # type: ignore[index]
                       what="the silence extended")
            assert len(am.silences()) == 1 and am.silences()[0]["status"]["state"] == "active"
            off = consul_server.kv_put(f"maintenance/{environment}/desired", "active")
            fleet.wait_states("active", intent_index=off)
            wait_until(lambda: _record(consul_server, environment) is None, 5, what="silence removed")
            time.sleep(1.0)  # another renewal round: nothing re-creates it
            assert [s["status"]["state"] for s in am.silences()] == ["expired"]


class SilenceProbeStep(Step):
    """An edge step that records, when it acts, which silences Alertmanager holds as active."""

    name = "silence-probe"
    role = Role.EDGE

    def __init__(self, am: Alertmanager):
        self.am = am
        self.seen: list[tuple[str, int]] = []

    def _active(self) -> int:
        return len([s for s in self.am.silences() if s["status"]["state"] == "active"])

    def check(self, ctx: StepContext, target: Mode) -> bool:
        return ctx.notes(self).get("mode") == target.value

    def apply(self, ctx: StepContext) -> None:
        self.seen.append(("apply", self._active()))
        ctx.save_notes(self, {"mode": Mode.MAINTENANCE.value})

    def revert(self, ctx: StepContext) -> None:
        self.seen.append(("revert", self._active()))
        ctx.save_notes(self, {"mode": Mode.ACTIVE.value})


def test_the_window_is_silenced_before_its_first_step_and_unsilenced_when_the_fleet_is_back(
        consul_server: ConsulAgentProcess, environment: str, tmp_path: Path) -> None:
    """With a renewal far away (30 min), only the transition hook can create and remove the silence in time."""
    with alertmanager(tmp_path / "am") as am:
        section = {"url": am.url, "lease_seconds": 3600, "renew_seconds": 1800}
        with window_fleet(consul_server, environment, tmp_path / "fleet", alertmanager=section) as fleet:
            fleet.add("worker-1", ["worker"])
            probe = SilenceProbeStep(am)
            doc = {**fleet.docs["worker-1"], "agent": {**fleet.docs["worker-1"]["agent"], "node": "edge-1", "roles": ["edge"],
                                                       "state_dir": str(tmp_path / "fleet" / "edge-1")}}
            doc.pop("worker")
            check = {"name": "unused", "url": "http://127.0.0.1:9/"}
            doc["edge"] = {"verify_maintenance": [check], "verify_active": [check]}
            fleet.agents["edge-1"] = Agent(config_of(doc), steps={Role.EDGE: [probe]}, log=file_logger(fleet.log)).start()
            fleet.wait_states("active")
            time.sleep(0.5)  # the periodic job's first (immediate) run is over: it comes back in 30 minutes
            assert am.silences() == []

            on = consul_server.kv_put(f"maintenance/{environment}/desired", json.dumps({"mode": "maintenance", "reason": "x"}))
            fleet.wait_states("maintenance", intent_index=on)
            assert probe.seen == [("apply", 1)], "the silence is active when the window's first step acts"

            off = consul_server.kv_put(f"maintenance/{environment}/desired", "active")
            fleet.wait_states("active", intent_index=off)
            assert probe.seen[-1] == ("revert", 1), "still silenced while the edge, last out, restores traffic"
            wait_until(lambda: [s["status"]["state"] for s in am.silences()] == ["expired"], 3, what="silence expired once the fleet is back")
            assert _record(consul_server, environment) is None
