"""maintctl's view of a large fleet: one line per role (how many boxes settled, moving, blocked, failing, dead), problem boxes by name.

A table row per box stops being readable (and fast to draw) at a few dozen
boxes; an operator of a thousand wants to know per role how far it is and
which boxes need a look. ``summarize`` is pure (counted from one
``FleetSnapshot``); ``summary_view`` draws it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from agent.core.gates import roles_in_direction
from agent.core.model import DEFAULT_ORDER, Intent, Mode, State
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
    for role in roles_in_direction(DEFAULT_ORDER, intent.mode):
        summary = RoleSummary(role.value)
        for box in snapshot.boxes:
            if role.value in box.roles and not box.released:
                kind = classify(box, role.value, intent)
                summary.counts[kind] += 1
                summary.named[kind].append(box.node)
        if sum(summary.counts.values()):
            out.append(summary)
    return out


def _names(summary: RoleSummary, listed: int) -> Text:
    text = Text()
    for kind in (*PROBLEMS, "blocked"):
        names = summary.named[kind]
        if names:
            shown = ", ".join(names[:listed]) + (f" (+{len(names) - listed} more)" if len(names) > listed else "")
            text.append(f"{kind}: ", style="bold red" if kind in PROBLEMS else "dim")
            text.append(shown + "  ")
    return text


def summary_view(snapshot: FleetSnapshot, header: RenderableType, listed: int = 8) -> RenderableType:
    """The header, then one row per role; ``--full`` shows the table of every box instead."""
    table = Table(expand=False)
    table.add_column("role")
    for kind in KINDS:
        table.add_column(kind, justify="right")
    table.add_column("boxes to look at", overflow="fold")
    for summary in summarize(snapshot):
        cells = [Text(str(summary.counts[k]), style="bold red" if k in PROBLEMS and summary.counts[k] else "") for k in KINDS]
        table.add_row(summary.role, *cells, _names(summary, listed))
    footer = Text(f"{len(snapshot.boxes)} boxes; every box: maintctl status --full (or --json)", style="dim")
    return Group(header, table, footer)



def dry_run_summary(snapshot: FleetSnapshot, intent: Intent, listed: int = 8) -> Table:
    """The dry run of ``on``/``off`` for a large fleet: per role in order, how many boxes will act, and the silent ones by name."""
    target = State.settled_for(intent.mode).value
    table = Table(title=f"plan: {intent.mode.value} → every box {target} (a row per role; --dry-run --json lists every box)")
    for column in ("step", "role", "boxes", "will go " + target, "already there", "released", "silent: will block"):
        table.add_column(column)
    step = 0
    for role in roles_in_direction(DEFAULT_ORDER, intent.mode):
        holders = [b for b in snapshot.boxes if role.value in b.roles]
        if not holders:
            continue
        step += 1
        released = [b for b in holders if b.node in intent.release]
        acting = [b for b in holders if b not in released]
        there = [b for b in acting if b.status and b.status.progress.get(role.value, b.status.state.value) == target]
        silent = [b.node for b in acting if b.status is None]
        names = ", ".join(silent[:listed]) + (f" (+{len(silent) - listed} more)" if len(silent) > listed else "")
        table.add_row(str(step), role.value, str(len(holders)), str(len(acting) - len(there)), str(len(there)), str(len(released)),
                      Text(names, style="bold red") if silent else "-")
    return table
