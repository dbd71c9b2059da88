"""What changed between two snapshots of a fleet: the phase, and each box's failure as it appears and clears.

``maintctl wait`` and ``status --watch`` follow a fleet for minutes; an
operator must see a failing step the moment a box reports it (which box, which
role, which step, what it said), not when the wait times out, and must see it
recover when the agent's retry passes. ``ChangeTracker`` turns the stream of
snapshots into those events; it is pure (no Consul, no terminal), so the
rules are table-tested.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from agent.core.gates import roles_in_direction
from agent.core.model import DEFAULT_ORDER, Intent, Role, State
from agent.ops.fleet import BoxView, FleetSnapshot


@dataclass(frozen=True)
class BoxFailure:
    """A box's reported error for the current intent: which role and step failed, and what it said."""

    node: str
    role: str
    step: str
    message: str

    def line(self) -> str:
        return f"{self.node} [{self.role}] {self.step}: {self.message}"


def failure_of(box: BoxView, intent: Intent, order: Sequence[Role] = DEFAULT_ORDER) -> BoxFailure | None:
    """The box's error, attributed to the first of its roles (in the direction's order) not yet settled."""
    status = box.status
    if status is None or box.released:
        return None
    if status.intent_error:
        return BoxFailure(box.node, ",".join(box.roles) or "-", "intent", status.intent_error)
    if not status.error:
        return None
    settled = State.settled_for(intent.mode).value
    mine = [r.value for r in roles_in_direction(order, intent.mode) if r.value in box.roles]
    role = next((r for r in mine if status.progress.get(r, status.state) != settled), mine[0] if mine else "-")
    step, sep, detail = status.error.partition(": ")
    if not sep or " " in step:
        step, detail = "step", status.error
    return BoxFailure(box.node, role, step, detail)


def failures(snapshot: FleetSnapshot) -> dict[str, BoxFailure]:
    if snapshot.intent is None:
        return {}
    return {b.node: f for b in snapshot.boxes if (f := failure_of(b, snapshot.intent, snapshot.order)) is not None}


@dataclass(frozen=True)
class Change:
    """One thing worth a line: ``phase`` moved, a box ``failed`` (or failed differently), a box ``recovered``."""

    kind: str
    text: str
    failure: BoxFailure | None = None


class ChangeTracker:
    """Remembers the last phase and failures seen; ``update`` returns what is new in a snapshot."""

    def __init__(self) -> None:
        self._phase: str | None = None
        self._failures: dict[str, BoxFailure] = {}

    @property
    def failing(self) -> dict[str, BoxFailure]:
        return dict(self._failures)

    def update(self, snapshot: FleetSnapshot, now: datetime) -> list[Change]:
        changes = []
        phase = snapshot.phase(now)
        if phase != self._phase:
            changes.append(Change("phase", phase))
            self._phase = phase
        current = failures(snapshot)
        for node, failure in current.items():
            if self._failures.get(node) != failure:
                changes.append(Change("failed", failure.line(), failure))
        for node, failure in self._failures.items():
            if node not in current:
                changes.append(Change("recovered", f"{node} [{failure.role}] {failure.step}: no longer failing", failure))
        self._failures = current
        return changes
