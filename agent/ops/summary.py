"""maintctl's view of a large fleet: one line per role (how many boxes settled, moving, blocked, failing, dead), problem boxes by name.

A table row per box stops being readable (and fast to draw) at a few dozen
boxes; an operator of a thousand wants to know per role how far it is and
which boxes need a look. Everything here is pure, counted from one
``FleetSnapshot``; ``agent.ops.views`` draws it (plain text, like every view
an operator asks for often).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.core.gates import roles_in_direction
from agent.core.model import Intent, Mode, State
from agent.ops.fleet import BoxView, FleetSnapshot

KINDS = ("settled", "moving", "blocked", "failing", "dead")
PROBLEMS = ("dead", "failing")  # listed by name first: these need a person


@dataclass
class RoleSummary:
    role: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    named: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in KINDS})


def classify(box: BoxView, role: str, intent: Intent) -> str:
    """Where ``role`` of ``box`` is for ``intent``: one of ``KINDS``."""
    status = box.status
    if status is None or (box.registered and not box.alive):
        return "dead"
    if box.twins:
        return "failing"  # its status key is another agent's: whatever it says, this box is not known to be settled
    if box.role_settled(role, intent):
        return "settled"
    if status.error or status.intent_error:
        return "failing"
    if status.blocked_on:
        return "blocked"
    return "moving"


def summarize(snapshot: FleetSnapshot) -> list[RoleSummary]:
    """Per role, in the direction of the intent (entering order when it is invalid), released boxes left out."""
    intent = snapshot.intent or Intent(mode=Mode.ACTIVE)
    out = []
    for role in roles_in_direction(snapshot.order, intent.mode):
        summary = RoleSummary(role.value)
        for box in snapshot.boxes:
            if role.value in box.roles and not box.released:
                kind = classify(box, role.value, intent)
                summary.counts[kind] += 1
                summary.named[kind].append(box.node)
        if sum(summary.counts.values()):
            out.append(summary)
    return out


@dataclass(frozen=True)
class RolePlan:
    """What the dry run of ``on``/``off`` would do to one role's boxes."""

    step: int
    role: str
    boxes: int
    will_act: int
    already_there: int
    released: int
    silent: list[str]


def plan_by_role(snapshot: FleetSnapshot, intent: Intent) -> list[RolePlan]:
    """Per role in the order of the intent: how many boxes will act, are already there, are released; the silent ones by name."""
    target = State.settled_for(intent.mode).value
    plans: list[RolePlan] = []
    for role in roles_in_direction(snapshot.order, intent.mode):
        holders = [b for b in snapshot.boxes if role.value in b.roles]
        if not holders:
            continue
        released = [b for b in holders if b.node in intent.release]
        acting = [b for b in holders if b not in released]
        there = [b for b in acting if b.status and b.status.progress.get(role.value, b.status.state.value) == target]
        plans.append(RolePlan(len(plans) + 1, role.value, len(holders), len(acting) - len(there), len(there), len(released),
                              [b.node for b in acting if b.status is None]))
    return plans


def shown_names(names: list[str], listed: int) -> str:
    """The first ``listed`` names and how many more."""
    return ", ".join(names[:listed]) + (f" (+{len(names) - listed} more)" if len(names) > listed else "")
