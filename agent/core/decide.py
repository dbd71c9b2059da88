"""What the reconciler does next: one pure decision over the intent, the box's state and the clock.

The reconciler's thread asks ``decide`` after every action it carries out and
does what the answer says; nothing here sleeps, reads Consul or runs a step,
so every case is one row of a table test. The answer is level-triggered: it
is derived afresh from the state and the progress the box remembers, so a
restart, a crash or a change of mind midway are the same question.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from agent.core.gates import roles_in_direction
from agent.core.machine import trigger_towards
from agent.core.model import Intent, Mode, Role, State


def effective_mode(intent: Intent, state: State, now: datetime) -> Mode:
    """What the box should move towards right now, given the intent and the clock.

    A future ``starts_at`` keeps a box that is active, or on its way back to
    active, where it is (the entry is scheduled; a box already entering or in
    maintenance is not pulled out); ``auto_end`` with a passed ``ends_at`` asks
    for active.
    """
    if intent.mode is Mode.MAINTENANCE:
        if intent.auto_end and intent.ends_at is not None and now >= intent.ends_at:
            return Mode.ACTIVE
        if intent.starts_at is not None and now < intent.starts_at and state in (State.ACTIVE, State.EXITING):
            return Mode.ACTIVE
    return intent.mode


def next_wake(intent: Intent, now: datetime, resync: float) -> float:
    """Seconds until the next moment the intent names (start, end), at most ``resync``."""
    wait = resync
    for moment in (intent.starts_at, intent.ends_at):
        if moment is not None and moment > now:
            wait = min(wait, (moment - now).total_seconds() + 0.01)
    return wait


@dataclass
class Progress:
    """Where this box is for one intent: the state of each of its roles (what the state file keeps)."""

    intent_index: int
    roles: dict[str, str] = field(default_factory=dict)


class Action(enum.Enum):
    """The kinds of next move; see ``Decision``."""

    HOLD = "hold"            # nothing to do now: look again after ``wait``
    FIRE = "fire"            # move the machine with ``trigger`` (a transition starts or turns around), then decide again
    CONVERGE = "converge"    # pass ``role``'s gate and run its steps towards ``target``, then decide again
    FINISH = "finish"        # every role settled at ``target``: fire ``trigger`` (entered / exited)
    ADOPT = "adopt"          # settled, a new intent of the same mode: re-check every step (no gates), look again after ``wait``
    REPAIR = "repair"        # settled: re-check the steps that repair drift, look again after ``wait``


@dataclass(frozen=True)
class Decision:
    """The next move: ``action`` and what it needs (``target`` the effective direction, ``wait`` seconds)."""

    action: Action
    target: Mode | None = None
    trigger: str | None = None
    role: Role | None = None
    wait: float = 0.0


def decide(
    intent: Intent | None,
    state: State,
    progress_index: int,
    progress: Mapping[str, str],
    roles: Sequence[Role],
    now: datetime,
    retry_in: float,
    resync: float,
) -> Decision:
    """The next move of a box with ``roles`` (in the global order) in ``state``.

    ``progress_index``/``progress`` are what the box remembers of its roles,
    ``retry_in`` the seconds left before a failed action may be retried (0:
    now), ``resync`` the longest the box looks away while settled.
    """
    if intent is None:
        return Decision(Action.HOLD, wait=resync)  # nothing read yet: hold whatever we were doing
    target = effective_mode(intent, state, now)
    trigger = trigger_towards(state, target)
    if trigger:
        return Decision(Action.FIRE, target, trigger=trigger)
    if state in (State.ENTERING, State.EXITING):
        if retry_in > 0:
            return Decision(Action.HOLD, target, wait=retry_in)
        settled = State.settled_for(target).value
        done = progress if progress_index == intent.index else {}
        for role in roles_in_direction(roles, target):
            if done.get(role.value) != settled:
                return Decision(Action.CONVERGE, target, role=role)
        return Decision(Action.FINISH, target, trigger="entered" if target is Mode.MAINTENANCE else "exited")
    wait = next_wake(intent, now, resync)
    if progress_index != intent.index:
        return Decision(Action.ADOPT, target, wait=wait)
    if retry_in > 0:
        return Decision(Action.HOLD, target, wait=wait)
    return Decision(Action.REPAIR, target, wait=wait)
