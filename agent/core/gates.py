"""Gates: which boxes must be where before a role of this box may act. Pure.

Before role R acts towards a target, every box holding a role that comes
before R (in the direction's order) must report, for the *same intent
index*, that role settled at the target. Membership comes from Consul's
catalog, so a box whose agent died stays a member and blocks visibly; only
an operator's explicit release (the intent's ``release`` list) lets the
fleet go on without it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from agent.core.model import Intent, Member, Mode, Role, State, Status


def roles_in_direction(order: Sequence[Role], target: Mode) -> list[Role]:
    return list(order) if target is Mode.MAINTENANCE else list(reversed(order))


def roles_before(role: Role, order: Sequence[Role], target: Mode) -> list[Role]:
    sequence = roles_in_direction(order, target)
    return sequence[: sequence.index(role)]


@dataclass(frozen=True)
class GateVerdict:
    open: bool
    waiting_for: tuple[str, ...] = ()
    released: tuple[str, ...] = ()
    waiting_boxes: tuple[str, ...] = ()  # the boxes named in ``waiting_for``: what a gate watch follows

    def describe(self, role: Role, named: int = 5) -> str:
        """What the gate waits for, naming at most ``named`` boxes: a status of a box waiting on 900 stays small."""
        shown = ", ".join(self.waiting_for[:named])
        more = len(self.waiting_for) - named
        return f"gate {role.value}: waiting for " + shown + (f" and {more} more" if more > 0 else "")


def evaluate_gate(
    role: Role,
    order: Sequence[Role],
    intent: Intent,
    members: Sequence[Member],
    statuses: Mapping[str, Status | None],
    self_box: str,
    target: Mode | None = None,
) -> GateVerdict:
    """Whether ``role`` of ``self_box`` may act for ``intent`` now, and who it waits for.

    ``statuses`` maps box name to its last status (None: no status key, i.e.
    the agent is down or never started). The box's own earlier roles are
    ordered locally by the reconciler, so ``self_box`` is not waited on.
    """
    target = target or intent.mode  # differs from the intent's mode when auto_end ends the window
    settled = State.settled_for(target).value
    waiting: list[str] = []
    waiting_boxes: list[str] = []
    released: list[str] = []
    for before in roles_before(role, order, target):
        for member in sorted(members, key=lambda m: m.box):
            if before.value not in member.roles or member.box == self_box:
                continue
            if member.box in intent.release:
                released.append(member.box)
                continue
            status = statuses.get(member.box)
            reason = _why_not_settled(status, before, intent.index, settled, member.alive)
            if reason:
                waiting.append(f"{member.box} ({before.value}: {reason})")
                waiting_boxes.append(member.box)
    return GateVerdict(open=not waiting, waiting_for=tuple(dict.fromkeys(waiting)), released=tuple(dict.fromkeys(released)),
                       waiting_boxes=tuple(dict.fromkeys(waiting_boxes)))


def _why_not_settled(status: Status | None, role: Role, index: int, settled: str, alive: bool) -> str:
    if status is None:
        return "no status: agent down?" if not alive else "no status yet"
    if status.intent_index != index:
        return f"still on intent {status.intent_index}" + ("" if alive else ", agent down?")
    progress = status.progress.get(role.value, status.state)
    if progress != settled:
        detail = status.error or status.blocked_on
        return progress + (f", {detail}" if detail else "")
    return ""
