"""``decide``: the reconciler's next move, table-tested without threads, steps or Consul.

Two kinds of test: a table of named situations and the exact move each gets (the variant and every field of
it), and a sweep over every combination of a small domain (intents, states, remembered progress, a pending
retry) that checks what must hold of any answer: a move the machine accepts, a role not yet done and every
role before it done, waits that never exceed ``resync``.
"""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime, timedelta

import pytest

from agent.core.decide import Adopt, Converge, Decision, Finish, Fire, Hold, Repair, decide, effective_mode, next_wake
from agent.core.gates import roles_in_direction
from agent.core.machine import BoxMachine
from agent.core.model import Intent, Mode, Role, State

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
ON = Intent(mode=Mode.MAINTENANCE, index=7)
OFF = Intent(mode=Mode.ACTIVE, index=8)
LATER = Intent(mode=Mode.MAINTENANCE, index=9, starts_at=NOW + timedelta(seconds=5))
ENDED = Intent(mode=Mode.MAINTENANCE, index=10, starts_at=NOW - timedelta(hours=2), ends_at=NOW - timedelta(hours=1), auto_end=True)
ENDS_SOON = Intent(mode=Mode.MAINTENANCE, index=11, ends_at=NOW + timedelta(seconds=3))
ROLES = [Role.EDGE, Role.WEB, Role.WORKER]
RESYNC = 30.0
M, A = Mode.MAINTENANCE, Mode.ACTIVE
ALL_IN = {"edge": "maintenance", "web": "maintenance", "worker": "maintenance"}
ALL_OUT = {"edge": "active", "web": "active", "worker": "active"}

CASES = [
    # (why, intent, state, progress index, progress, retry_in, expected)
    ("nothing read yet: hold", None, State.MAINTENANCE, 0, {}, 0.0, Hold(RESYNC)),
    ("nothing read yet, even mid-transition: hold", None, State.ENTERING, 7, {"edge": "maintenance"}, 0.0, Hold(RESYNC)),
    ("active, asked for maintenance: start entering", ON, State.ACTIVE, 0, {}, 0.0, Fire(M)),
    ("in maintenance, asked for active: start exiting", OFF, State.MAINTENANCE, 7, {}, 0.0, Fire(A)),
    ("entering, operator changed their mind", OFF, State.ENTERING, 7, {}, 0.0, Fire(A)),
    ("exiting, asked for maintenance again", ON, State.EXITING, 8, {}, 0.0, Fire(M)),
    ("a pending retry does not delay a change of direction", OFF, State.ENTERING, 7, {}, 9.0, Fire(A)),
    ("entering, nothing settled: the first role in the enter order", ON, State.ENTERING, 7, {}, 0.0, Converge(M, Role.EDGE)),
    ("entering, edge settled: web next", ON, State.ENTERING, 7, {"edge": "maintenance", "web": "entering"}, 0.0, Converge(M, Role.WEB)),
    ("a role settled out of order does not skip the ones before it", ON, State.ENTERING, 7, {"worker": "maintenance"}, 0.0,
     Converge(M, Role.EDGE)),
    ("progress of another intent counts for nothing", ON, State.ENTERING, 6, {"edge": "maintenance"}, 0.0, Converge(M, Role.EDGE)),
    ("a role settled for the other direction is not done", ON, State.ENTERING, 7, ALL_OUT, 0.0, Converge(M, Role.EDGE)),
    ("exiting walks the roles backwards", OFF, State.EXITING, 8, {"edge": "exiting"}, 0.0, Converge(A, Role.WORKER)),
    ("exiting, worker and web back: edge last", OFF, State.EXITING, 8, {"worker": "active", "web": "active"}, 0.0, Converge(A, Role.EDGE)),
    ("entering, every role settled: finish", ON, State.ENTERING, 7, ALL_IN, 0.0, Finish(M)),
    ("exiting, every role settled: finish", OFF, State.EXITING, 8, ALL_OUT, 0.0, Finish(A)),
    ("entering after a failure: wait out the retry", ON, State.ENTERING, 7, {}, 2.5, Hold(2.5)),
    ("exiting after a failure: wait out the retry", OFF, State.EXITING, 8, {}, 1.5, Hold(1.5)),
    ("even with every role settled, a pending retry waits", ON, State.ENTERING, 7, ALL_IN, 2.5, Hold(2.5)),
    ("settled for this intent: repair drift, look again after resync", ON, State.MAINTENANCE, 7, {}, 0.0, Repair(M, RESYNC)),
    ("active and settled for this intent: repair drift too", OFF, State.ACTIVE, 8, {}, 0.0, Repair(A, RESYNC)),
    ("settled, a drift repair failed: wait until resync", ON, State.MAINTENANCE, 7, {}, 5.0, Hold(RESYNC)),
    ("settled, a new intent of the same mode: adopt it", ON, State.MAINTENANCE, 5, {}, 0.0, Adopt(M, RESYNC)),
    ("active, a new active intent: adopt it", OFF, State.ACTIVE, 3, {}, 0.0, Adopt(A, RESYNC)),
    ("a pending retry does not delay adopting a new intent", ON, State.MAINTENANCE, 5, {}, 5.0, Adopt(M, RESYNC)),
    ("scheduled for later: stay active, wake at the start", LATER, State.ACTIVE, 9, {}, 0.0, Repair(A, 5.01)),
    ("scheduled for later, from an older intent: adopt, wake at the start", LATER, State.ACTIVE, 8, {}, 0.0, Adopt(A, 5.01)),
    ("scheduled for later, on the way back: keep exiting", LATER, State.EXITING, 8, {}, 0.0, Converge(A, Role.WORKER)),
    ("scheduled for later, already entering: not pulled out", LATER, State.ENTERING, 9, {}, 0.0, Converge(M, Role.EDGE)),
    ("scheduled for later, already in maintenance: stays", LATER, State.MAINTENANCE, 9, {}, 0.0, Repair(M, 5.01)),
    ("auto_end past the end: leave", ENDED, State.MAINTENANCE, 10, {}, 0.0, Fire(A)),
    ("auto_end past the end while entering: turn around", ENDED, State.ENTERING, 10, {}, 0.0, Fire(A)),
    ("auto_end past the end, back to active: settled", ENDED, State.ACTIVE, 10, {}, 0.0, Repair(A, RESYNC)),
    ("announced end in 3 s: look again then", ENDS_SOON, State.MAINTENANCE, 11, {}, 0.0, Repair(M, 3.01)),
]


def same(got: Decision, expected: Decision) -> bool:
    """The same variant with the same fields (waits within float rounding)."""
    if type(got) is not type(expected):
        return False
    for f in dataclasses.fields(got):
        mine, theirs = getattr(got, f.name), getattr(expected, f.name)
        if isinstance(theirs, float) and mine != pytest.approx(theirs) or not isinstance(theirs, float) and mine != theirs:
            return False
    return True


@pytest.mark.parametrize(("why", "intent", "state", "index", "progress", "retry_in", "expected"), CASES, ids=[c[0] for c in CASES])
def test_decide(why: str, intent: Intent | None, state: State, index: int, progress: dict[str, str], retry_in: float,
                expected: Decision) -> None:
    got = decide(intent, state, index, progress, ROLES, NOW, retry_in, RESYNC)
    assert same(got, expected), f"{why}: got {got}, expected {expected}"


def test_the_comparison_tells_variants_and_fields_apart() -> None:
    """``same`` is what the table relies on: it must fail on another variant, another field, another wait."""
    assert same(Repair(M, 5.01), Repair(M, 5.0 + 0.01))
    assert not same(Repair(M, RESYNC), Adopt(M, RESYNC))
    assert not same(Repair(M, RESYNC), Repair(A, RESYNC))
    assert not same(Hold(2.5), Hold(3.0))
    assert not same(Converge(M, Role.EDGE), Converge(M, Role.WEB))


def test_a_box_without_roles_finishes_at_once() -> None:
    assert decide(ON, State.ENTERING, 0, {}, [], NOW, 0.0, RESYNC) == Finish(M)
    assert decide(OFF, State.EXITING, 0, {}, [], NOW, 0.0, RESYNC) == Finish(A)


@pytest.mark.parametrize("decision", [Hold(1.0), Fire(M), Converge(M, Role.WEB), Finish(A), Adopt(M, 1.0), Repair(A, 1.0)])
def test_every_variant_is_frozen(decision: Decision) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(decision, dataclasses.fields(decision)[0].name, None)


@pytest.mark.parametrize(("decision", "trigger"), [(Fire(M), "enter"), (Fire(A), "exit"), (Finish(M), "entered"), (Finish(A), "exited")])
def test_fire_and_finish_name_the_machines_trigger(decision: Fire | Finish, trigger: str) -> None:
    assert decision.trigger == trigger


# -- every combination of a small domain ----------------------------------------------------------------

SWEEP_INTENTS = [ON, OFF, LATER, ENDED, ENDS_SOON]
SWEEP_STATES = [State.ACTIVE, State.ENTERING, State.MAINTENANCE, State.EXITING]
SWEEP_PROGRESS = [{}, {"edge": "maintenance"}, {"edge": "maintenance", "web": "maintenance"}, ALL_IN,
                  {"worker": "active"}, {"worker": "active", "web": "active"}, ALL_OUT, {"edge": "entering", "web": "exiting"}]


def _sweep() -> list[tuple[Intent, State, int, dict[str, str], float]]:
    return [(intent, state, index, progress, retry_in)
            for intent, state, progress, retry_in in itertools.product(SWEEP_INTENTS, SWEEP_STATES, SWEEP_PROGRESS, (0.0, 4.0))
            for index in (intent.index, intent.index - 1)]


def check_answer(intent: Intent, state: State, index: int, progress: dict[str, str], retry_in: float, got: Decision) -> None:
    """What must hold of any answer ``decide`` gives (raises AssertionError naming the broken rule)."""
    target = effective_mode(intent, state, NOW)
    settled = State.settled_for(target).value
    done = progress if index == intent.index else {}
    moving = state in (State.ENTERING, State.EXITING)
    match got:
        case Hold(wait=wait):
            assert 0 < wait <= RESYNC and retry_in > 0, "a hold waits, within resync, only for a pending retry"
        case Fire():
            assert got.target is target, "fire towards the effective mode"
            machine = BoxMachine(state)
            machine.fire(got.trigger)  # a trigger the machine accepts from this state ...
            assert machine.current is (State.ENTERING if target is Mode.MAINTENANCE else State.EXITING)  # ... moving towards target
        case Converge(target=towards, role=role):
            assert moving and towards is target and retry_in == 0, "converge only while moving, towards the target, retry due"
            sequence = roles_in_direction(ROLES, target)
            assert done.get(role.value) != settled, "never converge a role already done"
            assert all(done.get(r.value) == settled for r in sequence[:sequence.index(role)]), "every role before it is done"
        case Finish():
            assert moving and got.target is target and retry_in == 0
            assert all(done.get(r.value) == settled for r in ROLES), "finish only when every role is done"
            machine = BoxMachine(state)
            machine.fire(got.trigger)
            assert machine.current is State.settled_for(target)
        case Adopt(target=towards, wait=wait) | Repair(target=towards, wait=wait):
            assert not moving and State.settled_for(towards) is state and towards is target, "only a settled box adopts or repairs"
            assert 0 < wait <= RESYNC
            assert isinstance(got, Adopt) == (index != intent.index), "adopt exactly a new intent"
            assert isinstance(got, Adopt) or retry_in == 0, "a repair waits for its pending retry"


@pytest.mark.parametrize(("intent", "state", "index", "progress", "retry_in"), _sweep())
def test_every_answer_of_the_domain_is_a_legal_move(intent: Intent, state: State, index: int, progress: dict[str, str],
                                                   retry_in: float) -> None:
    got = decide(intent, state, index, progress, ROLES, NOW, retry_in, RESYNC)
    check_answer(intent, state, index, progress, retry_in, got)


def test_the_sweep_sees_every_variant_and_its_checks_can_fail() -> None:
    seen = {type(decide(i, s, n, p, ROLES, NOW, r, RESYNC)) for i, s, n, p, r in _sweep()}
    assert seen == {Hold, Fire, Converge, Finish, Adopt, Repair}
    wrong = [
        (ON, State.ENTERING, 7, ALL_IN, 0.0, Converge(M, Role.WEB)),  # a role already done
        (ON, State.ENTERING, 7, {}, 0.0, Converge(M, Role.WEB)),  # edge, before it, not done
        (ON, State.ENTERING, 7, {}, 0.0, Finish(M)),  # nothing done
        (ON, State.MAINTENANCE, 7, {}, 0.0, Adopt(M, RESYNC)),  # not a new intent
        (ON, State.ACTIVE, 7, {}, 0.0, Fire(A)),  # the wrong way
        (ON, State.MAINTENANCE, 7, {}, 0.0, Hold(RESYNC)),  # nothing to wait for
    ]
    for intent, state, index, progress, retry_in, answer in wrong:
        with pytest.raises(AssertionError):
            check_answer(intent, state, index, progress, retry_in, answer)


def test_effective_mode_and_next_wake() -> None:
    assert effective_mode(LATER, State.ACTIVE, NOW) is Mode.ACTIVE
    assert effective_mode(LATER, State.EXITING, NOW) is Mode.ACTIVE
    assert effective_mode(LATER, State.ENTERING, NOW) is Mode.MAINTENANCE
    assert effective_mode(LATER, State.MAINTENANCE, NOW) is Mode.MAINTENANCE
    assert effective_mode(LATER, State.ACTIVE, NOW + timedelta(minutes=5)) is Mode.MAINTENANCE
    assert effective_mode(ENDED, State.MAINTENANCE, NOW) is Mode.ACTIVE
    assert effective_mode(ENDS_SOON, State.MAINTENANCE, NOW + timedelta(minutes=5)) is Mode.MAINTENANCE  # no auto_end: stays
    assert effective_mode(OFF, State.MAINTENANCE, NOW) is Mode.ACTIVE
    assert next_wake(ON, NOW, RESYNC) == RESYNC
    assert next_wake(ENDED, NOW, RESYNC) == RESYNC  # moments in the past are no reason to wake
    assert next_wake(LATER, NOW, 2.0) == 2.0  # never longer than resync
    assert next_wake(LATER, NOW, RESYNC) == pytest.approx(5.01)
