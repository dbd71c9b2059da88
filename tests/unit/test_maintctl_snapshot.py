"""The fleet's phase, convergence and blockers, derived from one snapshot (no Consul)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from agent.clients.consul import KeyRead
from agent.core.errors import CasConflict
from agent.core.model import Intent, Member, Mode, State, Status
from agent.ops.fleet import FleetReader, IntentWriter
from tests.fakes import FakeGateway

NOW = datetime(2026, 12, 2, 21, 0, tzinfo=UTC)
FLEET = [("edge-1", ("edge",)), ("web-1", ("web",)), ("web-2", ("web",)), ("worker-1", ("worker",)),
         ("worker-2", ("worker",)), ("small-1", ("worker", "scheduler"))]


def _gateway(alive: bool = True) -> FakeGateway:
    return FakeGateway(members=[Member(box=b, roles=r, consul_node=b, alive=alive) for b, r in FLEET])


def _report(gw: FakeGateway, node: str, state: str, index: int, roles: tuple[str, ...], since: str = "2026-12-02T21:00:00+00:00",
            **extra: object) -> None:
    status = Status(node=node, roles=roles, state=State(state), intent_index=index, since=datetime.fromisoformat(since),
                    progress={r: state for r in roles}, **extra)
    gw.kv[f"maintenance/prod/status/{node}"] = (status.to_json().encode(), 1)


def _desire(gw: FakeGateway, value: str) -> int:
    assert gw.put_key("maintenance/prod/desired", value)
    return gw.kv["maintenance/prod/desired"][1]


def test_phase_counts_roles_in_the_direction_order() -> None:
    gw = _gateway()
    index = _desire(gw, "maintenance")
    _report(gw, "edge-1", "maintenance", index, ("edge",))
    _report(gw, "web-1", "maintenance", index, ("web",))
    _report(gw, "web-2", "entering", index, ("web",), blocked_on="gate web: waiting")
    for node, roles in FLEET[3:]:
        _report(gw, node, "active", index, roles)
    snap = FleetReader(gw, "maintenance", "prod").read()
    assert snap.phase(NOW) == "entering: edge done, web 1/2, worker 0/3, scheduler 0/1"
    assert not snap.converged
    assert "web-2: entering: gate web: waiting" in snap.blockers()


def test_exiting_runs_backwards_and_convergence_needs_the_same_intent() -> None:
    gw = _gateway()
    old = _desire(gw, "maintenance")
    index = _desire(gw, "off")
    for node, roles in FLEET:
        _report(gw, node, "active", index, roles, since=f"2026-12-02T21:0{len(node) % 10}:00+00:00")
    _report(gw, "edge-1", "maintenance", old, ("edge",))
    snap = FleetReader(gw, "maintenance", "prod").read()
    assert snap.phase(NOW) == "exiting: scheduler done, worker done, web done, edge 0/1"
    assert snap.blockers() == [f"edge-1: still on intent {old} (maintenance)"]
    assert snap.reached_at() is None
    _report(gw, "edge-1", "active", index, ("edge",), since="2026-12-02T21:09:30+00:00")
    snap = FleetReader(gw, "maintenance", "prod").read()
    assert snap.converged and snap.phase(NOW) == "active"
    assert snap.reached_at() == datetime(2026, 12, 2, 21, 9, 30, tzinfo=UTC)


def test_silent_boxes_block_and_released_ones_do_not() -> None:
    gw = _gateway(alive=False)
    index = _desire(gw, json.dumps({"mode": "maintenance", "release": ["small-1"]}))
    for node, roles in FLEET[:-2]:
        _report(gw, node, "maintenance", index, roles)
    snap = FleetReader(gw, "maintenance", "prod").read()
    assert snap.blockers() == ["worker-2: silent: no status, agent down?"]
    doc = snap.to_dict(NOW)
    assert [b["node"] for b in doc["boxes"] if b["silent"]] == ["small-1", "worker-2"]
    assert [b["node"] for b in doc["boxes"] if b["released"]] == ["small-1"]
    assert snap.phase(NOW) == "entering: edge done, web done, worker 1/2"


def test_invalid_intent_and_scheduled_window() -> None:
    gw = _gateway()
    _desire(gw, "garbage!")
    snap = FleetReader(gw, "maintenance", "prod").read()
    assert snap.intent is None and snap.phase(NOW) == "intent invalid"
    assert "unknown mode" in snap.blockers()[0]
    _desire(gw, json.dumps({"mode": "maintenance", "starts_at": "2026-12-02T22:00:00+00:00"}))
    snap = FleetReader(gw, "maintenance", "prod").read()
    assert snap.phase(NOW) == "scheduled for 2026-12-02T22:00:00+00:00"


def test_intent_writer_refuses_to_overwrite_a_newer_value() -> None:
    gw = FakeGateway()
    writer = IntentWriter(gw, "maintenance/prod/desired")
    first = writer.write(Intent(mode=Mode.MAINTENANCE, reason="a"), read_at=0)
    with pytest.raises(CasConflict, match=r"someone else changed maintenance/prod/desired since it was read \(now: .*\"reason\": \"a\".*\); not overwritten"):
        writer.write(Intent(mode=Mode.ACTIVE), read_at=0)
    assert writer.write(Intent(mode=Mode.ACTIVE), read_at=first) > first


def test_follow_blocks_on_the_status_prefix_instead_of_polling() -> None:
    calls: list[tuple[int, float | None]] = []

    class Recording(FakeGateway):
        def read_prefix(self, prefix: str, index: int = 0, wait: float | None = None) -> tuple[int, dict[str, KeyRead]]:
            calls.append((index, wait))
            self.index += 1  # Consul returned because something changed
            return super().read_prefix(prefix, index, wait)

    reader = FleetReader(Recording(), "maintenance", "prod", wait=7.0)
    follow = reader.follow()
    first, second, third = next(follow), next(follow), next(follow)
    assert calls[0] == (0, None)
    assert calls[1] == (first.index, 7.0) and calls[2] == (second.index, 7.0)
    assert first.index < second.index < third.index


def test_two_agents_with_the_same_node_name_are_a_problem_in_status() -> None:
    """The second agent never takes the first one's status key, so the key alone looks fine: the two registrations
    (on two Consul nodes) are what shows the conflict, and the fleet is not converged while it lasts."""
    from agent.ops import views
    from agent.ops.summary import summarize

    gw = _gateway()
    gw.members_list.append(Member(box="web-1", roles=("web",), consul_node="web-1-clone", alive=True))
    index = _desire(gw, "maintenance")
    for node, roles in FLEET:
        _report(gw, node, "maintenance", index, roles)
    snap = FleetReader(gw, "maintenance", "prod").read()
    conflict = "web-1: registered by 2 agents (Consul nodes web-1, web-1-clone): the same node name configured twice"
    assert not snap.converged and snap.blockers() == [conflict] and snap.verdict() == 1
    assert "registered by 2 agents" in views.status_view(snap, NOW, UTC, 200)
    web = next(s for s in summarize(snap) if s.role == "web")
    assert web.named["failing"] == ["web-1"]


def _ordered_gateway(orders: dict[str, tuple[str, ...]]) -> FakeGateway:
    return FakeGateway(members=[Member(box=b, roles=r, consul_node=b, alive=True, order=orders.get(b, ())) for b, r in FLEET])


def test_the_fleet_is_shown_in_the_order_its_agents_gate_by() -> None:
    """A fleet configured with ``[agent] order`` (here workers stop before web boxes leave rotation) is counted in that
    order, not in the default one: the phase, the per-role summary and the dry run follow the agents."""
    from agent.ops import views
    from agent.ops.summary import plan_by_role, summarize

    custom = ("edge", "worker", "web", "scheduler")
    gw = _ordered_gateway({b: custom for b, _ in FLEET})
    index = _desire(gw, "maintenance")
    for node, roles in FLEET:
        _report(gw, node, "entering", index, roles)
    snap = FleetReader(gw, "maintenance", "prod").read()
    assert [r.value for r in snap.order] == list(custom) and snap.order_conflict() is None
    assert snap.phase(NOW) == "entering: edge 0/1, worker 0/3, web 0/2, scheduler 0/1"
    assert [s.role for s in summarize(snap)] == list(custom)
    assert [p.role for p in plan_by_role(snap, Intent(Mode.ACTIVE))] == list(reversed(custom))
    dry = views.dry_run_view(snap, Intent(Mode.MAINTENANCE), UTC, 200, full=True)
    assert dry.index("worker-1") < dry.index("web-1")
    assert snap.to_dict(NOW)["order"] == list(custom)


def test_agents_that_disagree_on_the_order_are_a_problem_named_in_status() -> None:
    """Two orders in one fleet can make gates wait on each other for ever: maintctl says which boxes say what."""
    from agent.ops import views

    custom = ("edge", "worker", "web", "scheduler")
    gw = _ordered_gateway({"worker-1": custom, "worker-2": custom, "web-1": ("edge", "web", "worker", "scheduler")})
    index = _desire(gw, "maintenance")
    for node, roles in FLEET:
        _report(gw, node, "maintenance", index, roles)
    snap = FleetReader(gw, "maintenance", "prod").read()
    conflict = snap.order_conflict()
    assert conflict is not None and "edge > worker > web > scheduler on worker-1, worker-2" in conflict
    assert "edge > web > worker > scheduler on web-1" in conflict
    assert snap.order == FleetReader(FakeGateway(), "maintenance", "prod").read().order, "the default order while they disagree"
    assert snap.verdict() == 1 and snap.blockers()[0].startswith("order: the agents disagree")
    assert "the agents disagree on the role order" in " ".join(views.status_view(snap, NOW, UTC, 200).split())
