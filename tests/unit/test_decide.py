"""``decide``: the reconciler's next move, table-tested without threads, steps or Consul."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agent.core.decide import Action, Decision, decide, effective_mode, next_wake
from agent.core.model import Intent, Mode, Role, State

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
ON = Intent(mode=Mode.MAINTENANCE, index=7)
OFF = Intent(mode=Mode.ACTIVE, index=8)
LATER = Intent(mode=Mode.MAINTENANCE, index=9, starts_at=NOW + timedelta(seconds=5))
ENDED = Intent(mode=Mode.MAINTENANCE, index=10, starts_at=NOW - timedelta(hours=2), ends_at=NOW - timedelta(hours=1), auto_end=True)
ENDS_SOON = Intent(mode=Mode.MAINTENANCE, index=11, ends_at=NOW + timedelta(seconds=3))
ROLES = [Role.EDGE, Role.WEB, Role.WORKER]
RESYNC = 30.0

CASES = [
    # (why, intent, state, progress index, progress, retry_in, expected)
    ("nothing read yet: hold", None, State.MAINTENANCE, 0, {}, 0.0, Decision(Action.HOLD, wait=RESYNC)),
    ("active, asked for maintenance: start entering", ON, State.ACTIVE, 0, {}, 0.0,
     Decision(Action.FIRE, Mode.MAINTENANCE, trigger="enter")),
    ("in maintenance, asked for active: start exiting", OFF, State.MAINTENANCE, 7, {}, 0.0,
     Decision(Action.FIRE, Mode.ACTIVE, trigger="exit")),
    ("entering, operator changed their mind", OFF, State.ENTERING, 7, {}, 0.0,
     Decision(Action.FIRE, Mode.ACTIVE, trigger="exit")),
    ("exiting, asked for maintenance again", ON, State.EXITING, 8, {}, 0.0,
     Decision(Action.FIRE, Mode.MAINTENANCE, trigger="enter")),
    ("entering, nothing settled: the first role in the enter order", ON, State.ENTERING, 7, {}, 0.0,
     Decision(Action.CONVERGE, Mode.MAINTENANCE, role=Role.EDGE)),
    ("entering, edge settled: web next", ON, State.ENTERING, 7, {"edge": "maintenance", "web": "entering"}, 0.0,
     Decision(Action.CONVERGE, Mode.MAINTENANCE, role=Role.WEB)),
    ("progress of another intent counts for nothing", ON, State.ENTERING, 6, {"edge": "maintenance"}, 0.0,
     Decision(Action.CONVERGE, Mode.MAINTENANCE, role=Role.EDGE)),
    ("exiting walks the roles backwards", OFF, State.EXITING, 8, {"edge": "exiting"}, 0.0,
     Decision(Action.CONVERGE, Mode.ACTIVE, role=Role.WORKER)),
    ("entering, every role settled: finish", ON, State.ENTERING, 7, {"edge": "maintenance", "web": "maintenance", "worker": "maintenance"},
     0.0, Decision(Action.FINISH, Mode.MAINTENANCE, trigger="entered")),
    ("exiting, every role settled: finish", OFF, State.EXITING, 8, {"edge": "active", "web": "active", "worker": "active"},
     0.0, Decision(Action.FINISH, Mode.ACTIVE, trigger="exited")),
    ("entering after a failure: wait out the retry", ON, State.ENTERING, 7, {}, 2.5, Decision(Action.HOLD, Mode.MAINTENANCE, wait=2.5)),
    ("settled for this intent: repair drift, look again after resync", ON, State.MAINTENANCE, 7, {}, 0.0,
     Decision(Action.REPAIR, Mode.MAINTENANCE, wait=RESYNC)),
    ("settled, a drift repair failed: wait until resync", ON, State.MAINTENANCE, 7, {}, 5.0,
     Decision(Action.HOLD, Mode.MAINTENANCE, wait=RESYNC)),
    ("settled, a new intent of the same mode: adopt it", ON, State.MAINTENANCE, 5, {}, 0.0,
     Decision(Action.ADOPT, Mode.MAINTENANCE, wait=RESYNC)),
    ("scheduled for later: stay active, wake at the start", LATER, State.ACTIVE, 9, {}, 0.0,
     Decision(Action.REPAIR, Mode.ACTIVE, wait=5.01)),
    ("scheduled for later, on the way back: keep exiting", LATER, State.EXITING, 8, {}, 0.0,
     Decision(Action.CONVERGE, Mode.ACTIVE, role=Role.WORKER)),
    ("scheduled for later, already entering: not pulled out", LATER, State.ENTERING, 9, {}, 0.0,
     Decision(Action.CONVERGE, Mode.MAINTENANCE, role=Role.EDGE)),
    ("auto_end past the end: leave", ENDED, State.MAINTENANCE, 10, {}, 0.0, Decision(Action.FIRE, Mode.ACTIVE, trigger="exit")),
    ("announced end in 3 s: look again then", ENDS_SOON, State.MAINTENANCE, 11, {}, 0.0,
     Decision(Action.REPAIR, Mode.MAINTENANCE, wait=3.01)),
]


@pytest.mark.parametrize(("why", "intent", "state", "index", "progress", "retry_in", "expected"), CASES, ids=[c[0] for c in CASES])
def test_decide(why: str, intent: Intent | None, state: State, index: int, progress: dict[str, str], retry_in: float,
                expected: Decision) -> None:
    got = decide(intent, state, index, progress, ROLES, NOW, retry_in, RESYNC)
    assert got.action is expected.action, why
    assert (got.target, got.trigger, got.role) == (expected.target, expected.trigger, expected.role), why
    assert got.wait == pytest.approx(expected.wait), why


def test_a_box_without_roles_finishes_at_once() -> None:
    assert decide(ON, State.ENTERING, 0, {}, [], NOW, 0.0, RESYNC) == Decision(Action.FINISH, Mode.MAINTENANCE, trigger="entered")


def test_decision_is_frozen() -> None:
    decision = decide(ON, State.ACTIVE, 0, {}, ROLES, NOW, 0.0, RESYNC)
    with pytest.raises(AttributeError):
        decision.action = Action.HOLD  # type: ignore[misc]


def test_effective_mode_and_next_wake() -> None:
    assert effective_mode(LATER, State.ACTIVE, NOW) is Mode.ACTIVE
    assert effective_mode(LATER, State.MAINTENANCE, NOW) is Mode.MAINTENANCE
    assert effective_mode(LATER, State.ACTIVE, NOW + timedelta(minutes=5)) is Mode.MAINTENANCE
    assert effective_mode(ENDED, State.MAINTENANCE, NOW) is Mode.ACTIVE
    assert effective_mode(OFF, State.MAINTENANCE, NOW) is Mode.ACTIVE
    assert next_wake(ON, NOW, RESYNC) == RESYNC
    assert next_wake(ENDED, NOW, RESYNC) == RESYNC  # moments in the past are no reason to wake
    assert next_wake(LATER, NOW, 2.0) == 2.0  # never longer than resync
