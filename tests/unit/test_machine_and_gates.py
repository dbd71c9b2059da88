"""The state machine's legal moves and the gates' verdicts, table-driven."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from agent.core.gates import GateVerdict, evaluate_gate, roles_before
from agent.core.machine import BoxMachine, MachineError, trigger_towards
from agent.core.model import DEFAULT_ORDER, Intent, Member, Mode, Role, State, Status

SINCE = datetime(2026, 12, 2, 21, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("state", "target", "trigger"),
    [
        (State.ACTIVE, Mode.MAINTENANCE, "enter"), (State.EXITING, Mode.MAINTENANCE, "enter"),
        (State.ENTERING, Mode.MAINTENANCE, None), (State.MAINTENANCE, Mode.MAINTENANCE, None),
        (State.MAINTENANCE, Mode.ACTIVE, "exit"), (State.ENTERING, Mode.ACTIVE, "exit"),
        (State.EXITING, Mode.ACTIVE, None), (State.ACTIVE, Mode.ACTIVE, None),
    ],
)
def test_trigger_towards(state: State, target: Mode, trigger: str | None) -> None:
    assert trigger_towards(state, target) == trigger


def test_machine_refuses_illegal_moves_and_reports_changes() -> None:
    seen: list[tuple[State, State]] = []
    machine = BoxMachine(on_change=lambda a, b: seen.append((a, b)))
    with pytest.raises(MachineError):
        machine.fire("entered")
    for trigger in ("enter", "exit", "enter", "entered", "exit", "exited"):
        machine.fire(trigger)
    assert machine.current is State.ACTIVE
    assert seen[1] == (State.ENTERING, State.EXITING)  # change of mind midway
    assert len(seen) == 6


def test_roles_before_in_each_direction() -> None:
    assert roles_before(Role.WORKER, DEFAULT_ORDER, Mode.MAINTENANCE) == [Role.EDGE, Role.WEB]
    assert roles_before(Role.WEB, DEFAULT_ORDER, Mode.ACTIVE) == [Role.SCHEDULER, Role.WORKER]
    assert roles_before(Role.EDGE, DEFAULT_ORDER, Mode.MAINTENANCE) == []


def member(box: str, *roles: str, alive: bool = True) -> Member:
    return Member(box=box, roles=roles, consul_node=box, alive=alive)


def status(box: str, index: int, state: str, **progress: str) -> Status:
    return Status(node=box, roles=tuple(progress) or ("web",), state=State(state), intent_index=index, since=SINCE, progress=progress)


MEMBERS = [member("edge-1", "edge"), member("web-1", "web"), member("web-2", "web"), member("worker-1", "worker")]


@pytest.mark.parametrize(
    ("role", "intent", "statuses", "open_", "waiting"),
    [
        (Role.EDGE, Intent(Mode.MAINTENANCE, 9), {}, True, ()),
        (Role.WEB, Intent(Mode.MAINTENANCE, 9), {"edge-1": status("edge-1", 9, "maintenance", edge="maintenance")}, True, ()),
        (Role.WEB, Intent(Mode.MAINTENANCE, 9), {"edge-1": status("edge-1", 8, "maintenance", edge="maintenance")}, False,
         ("edge-1 (edge: still on intent 8)",)),
        (Role.WEB, Intent(Mode.MAINTENANCE, 9), {"edge-1": None}, False, ("edge-1 (edge: no status yet)",)),
        (Role.WORKER, Intent(Mode.MAINTENANCE, 9), {"edge-1": status("edge-1", 9, "maintenance", edge="maintenance"),
                                                    "web-1": status("web-1", 9, "maintenance", web="maintenance"),
                                                    "web-2": status("web-2", 9, "entering", web="entering")},
         False, ("web-2 (web: entering)",)),
        (Role.EDGE, Intent(Mode.ACTIVE, 10), {"web-1": status("web-1", 10, "active", web="active"),
                                              "web-2": status("web-2", 10, "exiting", web="exiting"),
                                              "worker-1": status("worker-1", 10, "active", worker="active")},
         False, ("web-2 (web: exiting)",)),
        (Role.EDGE, Intent(Mode.ACTIVE, 10, release=("web-2",)), {"web-1": status("web-1", 10, "active", web="active"),
                                                                  "worker-1": status("worker-1", 10, "active", worker="active")},
         True, ()),
    ],
)
def test_gate_verdicts(role: Role, intent: Intent, statuses: dict, open_: bool, waiting: tuple) -> None:
    verdict = evaluate_gate(role, DEFAULT_ORDER, intent, MEMBERS, statuses, self_box="me")
    assert verdict.open is open_
    assert verdict.waiting_for == waiting


def test_dead_box_blocks_and_says_so() -> None:
    members = [member("edge-1", "edge", alive=False)]
    verdict = evaluate_gate(Role.WEB, DEFAULT_ORDER, Intent(Mode.MAINTENANCE, 3), members, {"edge-1": None}, "web-1")
    assert not verdict.open
    assert verdict.describe(Role.WEB) == "gate web: waiting for edge-1 (edge: no status: agent down?)"


def test_released_box_is_reported_not_silently_skipped() -> None:
    members = [member("edge-1", "edge", alive=False)]
    verdict = evaluate_gate(Role.WEB, DEFAULT_ORDER, Intent(Mode.MAINTENANCE, 3, release=("edge-1",)), members, {}, "web-1")
    assert verdict.open and verdict.released == ("edge-1",)


def test_a_status_key_of_the_wrong_shape_is_refused_not_half_parsed() -> None:
    for raw in (b"[1, 2]", b'"maintenance"', b'{"node": "x", "roles": [], "state": "active", "intent_index": 1, "since": "", "progress": []}'):
        with pytest.raises((ValueError, TypeError)):
            Status.from_json(raw)


def test_status_has_real_types_but_the_same_json_on_the_wire() -> None:
    sent = status("web-1", 7, "maintenance", web="maintenance")
    wire = json.loads(sent.to_json())
    assert wire["state"] == "maintenance" and wire["since"] == "2026-12-02T21:00:00+00:00"
    assert wire["roles"] == ["web"] and wire["progress"] == {"web": "maintenance"}
    back = Status.from_json(sent.to_json())
    assert back == sent and back.state is State.MAINTENANCE and back.since == SINCE
    for broken in ({"state": "paused"}, {"since": "yesterday"}, {"since": None}):
        with pytest.raises(ValueError):
            Status.from_json(json.dumps({**wire, **broken}))


def test_a_gate_on_many_boxes_names_a_few_and_counts_the_rest() -> None:
    verdict = GateVerdict(open=False, waiting_for=tuple(f"worker-{i} (worker: entering)" for i in range(900)))
    text = verdict.describe(Role.SCHEDULER)
    assert text.startswith("gate scheduler: waiting for worker-0 (worker: entering), worker-1") and text.endswith(" and 895 more")
    assert len(text) < 250
