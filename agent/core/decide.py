"""What the reconciler does next: one pure decision over the intent, the box's state and the clock.

The reconciler's thread asks ``decide`` after every action it carries out and
does what the answer says; nothing here sleeps, reads Consul or runs a step,
so every case is one row of a table test. The answer is level-triggered: it
is derived afresh from the state and the progress the box remembers, so a
restart, a crash or a change of mind midway are the same question.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeAlias

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


def settled_target(intent: Intent | None, state: State, progress_index: int, now: datetime) -> Mode | None:
    """The mode a box is settled at for ``intent`` (its roles done, nothing to move), else None."""
    if intent is None or state not in (State.ACTIVE, State.MAINTENANCE) or progress_index != intent.index:
        return None
    target = effective_mode(intent, state, now)
    return target if State.settled_for(target) is state else None


@dataclass
class Progress:
    """Where this box is for one intent: the state of each of its roles (what the state file keeps)."""

    intent_index: int
    roles: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Hold:
    """Nothing to do now: look again after ``wait`` seconds (nothing read yet, or a failed action's retry is not due)."""

    wait: float


@dataclass(frozen=True)
class Fire:
    """Start moving towards ``target`` (a transition starts, or turns around midway), then decide again."""

    target: Mode

    @property
    def trigger(self) -> str:
        return "enter" if self.target is Mode.MAINTENANCE else "exit"


@dataclass(frozen=True)
class Converge:
    """Pass ``role``'s gate and run its steps towards ``target``, then decide again."""

    target: Mode
    role: Role


@dataclass(frozen=True)
class Finish:
    """Every role settled at ``target``: end the transition (the machine's ``entered`` / ``exited``)."""

    target: Mode

    @property
    def trigger(self) -> str:
        return "entered" if self.target is Mode.MAINTENANCE else "exited"


@dataclass(frozen=True)
class Adopt:
    """Settled, and a new intent of the same mode arrived: re-check every step (no gates); look again after ``wait``."""

    target: Mode
    wait: float


@dataclass(frozen=True)
class Repair:
    """Settled for this intent: re-check the steps that repair drift; look again after ``wait``."""

    target: Mode
    wait: float


Decision: TypeAlias = Hold | Fire | Converge | Finish | Adopt | Repair
"""The next move: one variant per kind, each carrying only what it needs. The reconciler handles them in one
``match`` whose ``assert_never`` makes mypy prove every variant is handled."""


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
        return Hold(resync)  # nothing read yet: hold whatever we were doing
    target = effective_mode(intent, state, now)
    if trigger_towards(state, target):
        return Fire(target)
    if state in (State.ENTERING, State.EXITING):
        if retry_in > 0:
            return Hold(retry_in)
        settled = State.settled_for(target).value
        done = progress if progress_index == intent.index else {}
        for role in roles_in_direction(roles, target):
            if done.get(role.value) != settled:
                return Converge(target, role)
        return Finish(target)
    wait = next_wake(intent, now, resync)
    if progress_index != intent.index:
        return Adopt(target, wait)
    if retry_in > 0:
        return Hold(wait)
    return Repair(target, wait)
