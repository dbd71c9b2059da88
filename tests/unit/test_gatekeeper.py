"""GateKeeper: reads the fleet for a gate, fails closed on a membership it cannot trust, watches only what it waits on."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from pathlib import Path

import structlog
import structlog.testing

from agent.core.errors import ConsulUnavailable
from agent.core.model import Intent, Member, Mode, Role, State, Status
from agent.daemon.decision.gatekeeper import GateKeeper
from agent.daemon.decision.record import BoxRecord
from agent.daemon.local.metrics import AgentMetrics
from agent.daemon.local.statefile import StateFile
from tests.fakes import FakePeers, sample

ON = Intent(Mode.MAINTENANCE, 12)
SINCE = datetime(2026, 12, 2, 21, 0, tzinfo=UTC)


class UnreachablePeers(FakePeers):
    def members(self, roles: Collection[str] | None = None) -> list[Member]:
        raise ConsulUnavailable("Consul at http://127.0.0.1:8500 unreachable during service health: ConnectTimeout")


class SpentPeers(FakePeers):
    def read_budget(self) -> float:
        return 0.4


def keeper(tmp_path: Path, peers: FakePeers) -> tuple[GateKeeper, AgentMetrics, list[str]]:
    published: list[str] = []
    metrics = AgentMetrics()
    record = BoxRecord("web-1", [Role.WEB], StateFile(tmp_path / "state.json"), lambda: SINCE)
    gates = GateKeeper("web-1", list(Role), peers, record, lambda: published.append(str(record.blocked_on)), metrics,
                       structlog.get_logger(), resync=7.0)
    return gates, metrics, published


def fleet(**statuses: Status) -> FakePeers:
    members = [Member("edge-1", ("edge",), "n1", True), Member("web-1", ("web",), "n2", True), Member("worker-1", ("worker",), "n3", True)]
    return FakePeers(members_list=members, statuses=dict(statuses))


def test_the_first_role_of_a_direction_has_no_gate_and_reads_nothing(tmp_path: Path) -> None:
    gates, _, _ = keeper(tmp_path, UnreachablePeers())
    assert gates.check(Role.EDGE, ON, Mode.MAINTENANCE).open
    check = gates.check(Role.SCHEDULER, Intent(Mode.ACTIVE, 13), Mode.ACTIVE)
    assert check.open and not check.gated


def test_a_shut_gate_watches_exactly_the_boxes_it_waits_on_then_opens(tmp_path: Path) -> None:
    peers = fleet()
    gates, metrics, published = keeper(tmp_path, peers)
    check = gates.pass_(Role.WEB, ON, Mode.MAINTENANCE)
    assert not check.open and check.wait == 7.0 and check.blocked_on == "gate web: waiting for edge-1 (edge: no status yet)"
    assert peers.watched == [("edge-1",)] and sample(metrics, "maintenance_gate_blocked") == 1
    assert published == [check.blocked_on]
    gates.pass_(Role.WEB, ON, Mode.MAINTENANCE)
    assert len(published) == 1, "the same wait is published once"
    peers.statuses["edge-1"] = Status("edge-1", ("edge",), State.MAINTENANCE, 12, SINCE, progress={"edge": "maintenance"})
    check = gates.pass_(Role.WEB, ON, Mode.MAINTENANCE)
    assert check.open and sample(metrics, "maintenance_gate_blocked") == 0 and published[-1] == "None"
    gates.done()
    assert peers.watched[-1] == ()



def test_a_gate_found_open_at_once_is_logged_open_once_per_intent(tmp_path: Path) -> None:
    """The moment a role may act is logged even when it never had to wait (benches and operators read it)."""
    settled = Status("edge-1", ("edge",), State.MAINTENANCE, 12, SINCE, progress={"edge": "maintenance"})
    gates, _, published = keeper(tmp_path, fleet(**{"edge-1": settled}))
    with structlog.testing.capture_logs() as logs:
        assert gates.pass_(Role.WEB, ON, Mode.MAINTENANCE).open
        assert gates.pass_(Role.WEB, ON, Mode.MAINTENANCE).open
    assert [e["event"] for e in logs] == ["gate open"] and logs[0]["intent_index"] == 12
    assert published == [], "nothing was shown as blocked, so nothing new to publish"

def test_a_box_missing_from_its_own_membership_fails_closed(tmp_path: Path) -> None:
    peers = FakePeers(members_list=[Member("edge-1", ("edge",), "n1", True)])  # an ACL that hides this box's registration
    gates, _, _ = keeper(tmp_path, peers)
    check = gates.check(Role.WEB, ON, Mode.MAINTENANCE)
    assert not check.open and check.error is not None and "not among the registered maintenance-agent services" in check.error
    assert peers.watched == []


def test_an_unreadable_fleet_is_an_error_and_a_spent_budget_a_wait(tmp_path: Path) -> None:
    gates, _, _ = keeper(tmp_path, UnreachablePeers())
    check = gates.check(Role.WEB, ON, Mode.MAINTENANCE)
    assert not check.open and check.error is not None and check.error.startswith("cannot read the fleet from Consul: Consul at")
    spent = SpentPeers(members_list=fleet().members_list)
    gates, _, published = keeper(tmp_path, spent)
    check = gates.pass_(Role.WEB, ON, Mode.MAINTENANCE)
    assert (check.open, check.wait, check.error, check.blocked_on) == (False, 0.4, None, None)
    assert published == [] and spent.watched == []
