"""How maintctl shows things in a terminal: rich tables and headers, built from snapshots and records.

Kept apart from the command definitions so ``maintctl.py`` only wires options
to actions, and so every table is built from immutable data (a
``FleetSnapshot``, a ``WindowRecord``, a ``Plan``) with no Consul in sight.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, tzinfo

from rich import box as borders
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from agent.core.gates import roles_in_direction
from agent.core.model import DEFAULT_ORDER, Intent, State
from agent.core.planning import Plan, format_duration
from agent.ops.fleet import BoxView, FleetSnapshot
from agent.ops.follow import Change
from agent.ops.history import WindowRecord

_STATE_STYLE = {"active": "green", "maintenance": "yellow", "entering": "cyan", "exiting": "cyan", "unknown": "bold red"}
WIDE = 120
"""From this many columns on, every column is shown with full dates; below, the less important ones go first."""


def _when(text: str | None, tz: tzinfo, now: datetime | None = None, wide: bool = True) -> str:
    """A moment from a status or record: full on a wide screen; narrow: the time today, else month-day and time."""
    if not text:
        return "-"
    try:
        moment = datetime.fromisoformat(text).astimezone(tz)
    except (TypeError, ValueError):
        return text
    if wide:
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    if now is not None and moment.date() == now.astimezone(tz).date():
        return moment.strftime("%H:%M:%S")
    return moment.strftime("%m-%d %H:%M")


def _iso(moment: datetime, tz: tzinfo | None) -> str:
    return (moment.astimezone(tz) if tz is not None else moment).isoformat()


def describe_intent(intent: Intent | None, error: str | None, written: bool = True, tz: tzinfo | None = None) -> str:
    """One line for an intent; ``written=False`` for one not (yet) in Consul, so index 0 means nothing."""
    if intent is None:
        return f"invalid ({error})"
    if written and intent.index == 0:
        return "active (no desired key)"
    parts = [f"{intent.mode.value} (intent {intent.index})" if written else intent.mode.value]
    if intent.by or intent.reason:
        parts.append(f"by {intent.by or '?'}: {intent.reason or 'no reason given'}")
    if intent.ends_at:
        parts.append(f"until {_iso(intent.ends_at, tz)}")
    if intent.release:
        parts.append("released: " + ", ".join(intent.release))
    return " — ".join(parts)


def _table(*columns: str, no_wrap: tuple[str, ...] = (), flexible: str = "", **options: object) -> Table:
    """A table whose named columns never break a value across lines (names, states, times); ``flexible`` takes the rest."""
    table = Table(box=borders.SIMPLE_HEAD, show_edge=False, pad_edge=False, **options)  # type: ignore[arg-type]
    for column in columns:
        table.add_column(column, no_wrap=column in no_wrap, overflow="fold", ratio=1 if column == flexible else None)
    return table


def _cell_len(value: RenderableType) -> int:
    return value.cell_len if isinstance(value, Text) else len(str(value))


def _fit(rows: list[dict[str, RenderableType]], columns: tuple[str, ...], width: int, droppable: tuple[str, ...],
         flexible: str = "", flexible_min: int = 14) -> tuple[str, ...]:
    """The columns that fit ``width``: whole values in every column but ``flexible`` (which wraps, at least
    ``flexible_min`` wide); ``droppable`` columns go first to last until the rest fits."""
    kept = list(columns)

    def needed() -> int:
        total = 0
        for column in kept:
            longest = max([len(column), *(_cell_len(r.get(column, "")) for r in rows)])
            total += min(longest, flexible_min) if column == flexible else longest
        return total + 3 * (len(kept) - 1)  # a space of padding either side of a one-space rule

    for column in droppable:
        if needed() <= width:
            break
        kept.remove(column)
    return tuple(kept)


def _agent_cell(box: BoxView) -> Text:
    if box.released:
        return Text("released", style="yellow")
    if not box.registered:
        return Text("unregistered", style="red")
    return Text("alive") if box.alive else Text("DOWN", style="bold red")


_CHANGE_STYLE = {"phase": ("·", "dim"), "failed": ("✗ error", "bold red"), "recovered": ("✓ cleared", "green")}


def change_line(change: Change, now: datetime, tz: tzinfo) -> Text:
    """One line per change while following a fleet: ``22:04:31 ✗ error worker-1 [worker] services: …``."""
    mark, style = _CHANGE_STYLE.get(change.kind, ("·", ""))
    return Text.assemble((f"{now.astimezone(tz):%H:%M:%S} ", "dim"), (mark, style), " ", change.text)


def status_view(snapshot: FleetSnapshot, now: datetime, tz: tzinfo, width: int = WIDE) -> RenderableType:
    """The fleet's phase on top, one row per box, then each distinct error once (rows point at it: ``error 1``).

    Below ``WIDE`` columns the intent column folds into the notes (only a box on another
    intent says so) and times lose their date when it is today; names and states stay whole.
    """
    wide = width >= WIDE
    header = Text.assemble(
        ("environment ", "dim"), (snapshot.environment, "bold"), ("  desired ", "dim"),
        describe_intent(snapshot.intent, snapshot.intent_error, tz=tz), "\n",
        ("phase ", "dim"), (snapshot.phase(now), "bold " + ("green" if snapshot.converged else "yellow")),
    )
    errors: dict[str, int] = {}
    rows: list[dict[str, RenderableType]] = []
    for box in snapshot.boxes:
        status = box.status
        row: dict[str, RenderableType] = {"node": box.node, "roles": ",".join(box.roles), "agent": _agent_cell(box),
                                          "intent": "-", "since": "-", "notes": Text()}
        if status is None:
            row["state"] = Text("unreadable" if box.unreadable else "silent", style="bold red")
            row["notes"] = Text("no status: " + ("cannot parse it" if box.unreadable else "agent down or not started"), style="red")
        else:
            stale = snapshot.intent is not None and status.intent_index != snapshot.intent.index
            row["state"] = Text(status.state.value, style=_STATE_STYLE.get(status.state.value, ""))
            row["intent"] = Text(str(status.intent_index), style="red" if stale else "")
            row["since"] = _when(status.since.isoformat(), tz, now, wide)
            notes = Text()
            if stale and not wide:
                notes.append(f"on intent {status.intent_index} ", style="red")
            if status.blocked_on:
                notes.append(status.blocked_on + " ")
            error = status.error or status.intent_error
            if error:
                number = errors.setdefault(error, len(errors) + 1)
                notes.append(f"error {number}", style="bold red")
            row["notes"] = notes
        rows.append(row)
    columns = _fit(rows, ("node", "roles", "state", "intent", "since", "agent", "notes"), width,
                   droppable=("intent", "since", "agent", "roles"), flexible="notes")
    table = _table(*columns, no_wrap=("node", "roles", "state", "intent", "since", "agent"), flexible="notes", expand=width < WIDE)
    for row, box in zip(rows, snapshot.boxes, strict=True):
        if "agent" not in columns and not (box.registered and box.alive):
            row["notes"] = Text.assemble(_agent_cell(box), " ", row["notes"])  # type: ignore[arg-type]
        table.add_row(*(row[c] for c in columns))
    parts: list[RenderableType] = [header, table]
    for error, number in errors.items():
        nodes = [b.node for b in snapshot.boxes if b.status and (b.status.error or b.status.intent_error) == error]
        parts.append(Text.assemble((f"error {number} ", "bold red"), (", ".join(nodes), "bold"), ": ", error))
    return Group(*parts)


def dry_run_view(snapshot: FleetSnapshot, intent: Intent, tz: tzinfo, width: int = WIDE) -> RenderableType:
    """Which boxes of which roles will act, in which order, with their current state (box names never cut)."""
    target = State.settled_for(intent.mode).value
    title = Text(f"plan: {describe_intent(intent, None, written=False, tz=tz)} → every box {target}", style="bold")
    rows: list[dict[str, RenderableType]] = []
    step = 0
    for role in roles_in_direction(DEFAULT_ORDER, intent.mode):
        holders = [b for b in snapshot.boxes if role.value in b.roles]
        if not holders:
            continue
        step += 1
        for box in holders:
            current = box.status.progress.get(role.value, box.status.state) if box.status else "silent"
            if box.node in intent.release:
                will = "skip (released)"
            elif current == target:
                will = "nothing (already there)"
            else:
                will = f"go {target}" + ("" if box.status else " — agent silent, will block")
            rows.append({"step": f"{step} {role.value}", "box": box.node, "now": current, "will": will})
    columns = _fit(rows, ("step", "box", "now", "will"), width, droppable=("now",), flexible="will", flexible_min=9)
    table = _table(*columns, no_wrap=("step", "box", "now"), flexible="will", expand=width < WIDE)
    for row in rows:
        table.add_row(*(row[c] for c in columns))
    when = f"starts {_iso(intent.starts_at, tz)}" if intent.starts_at else "starts as soon as written"
    end = f", announced end {_iso(intent.ends_at, tz)}" if intent.ends_at else ""
    footer = Text(f"{when}{end}\ndry run: nothing written ({snapshot.desired_key} stays at index {snapshot.desired_modify_index})", style="dim")
    return Group(title, table, footer)


def history_view(records: list[WindowRecord], now: datetime, tz: tzinfo, width: int = WIDE) -> RenderableType:
    """One row per window; below ``WIDE`` columns the phase times go (``--json`` has them) and dates shorten."""
    wide = width >= WIDE
    columns = ("opened", "by", "reason", "planned", "maintenance reached", "exit started", "active again", "took", "overrun") if wide \
        else ("opened", "by", "reason", "planned", "took", "overrun")
    table = _table(*columns, no_wrap=("opened", "planned", "maintenance reached", "exit started", "active again", "took"),
                   title="maintenance windows, newest first")
    for record in records:
        duration, overrun = record.duration, record.overrun(now)
        reason = record.opened.reason + (f" (released {', '.join(r.node for r in record.releases)})" if record.releases else "")
        row: dict[str, RenderableType] = {
            "opened": _when(record.opened.at, tz, None, wide), "by": record.opened.by, "reason": reason,
            "planned": format_duration(record.planned),
            "maintenance reached": _when(record.maintenance_reached, tz), "exit started": _when(record.closed.at, tz) if record.closed else "-",
            "active again": _when(record.active_reached, tz),
            "took": format_duration(duration) if duration is not None else Text("open", style="yellow"),
            "overrun": Text(f"yes, {format_duration(overrun)}", style="red") if overrun else "no",
        }
        table.add_row(*(row[c] for c in columns))
    return table


def suggested_on(plan: Plan, tz: tzinfo, policy_flag: str = "") -> tuple[str, str | None]:
    """The ``maintctl on`` command for the plan's slot that ``on`` accepts as printed, and why ``--force`` is in it (or None).

    ``policy_flag`` carries the global options the plan was made under (``--env``, and ``--max-window``
    when not the default, so ``on`` judges the window by the same policy).
    """
    whole_minutes = math.ceil(plan.estimate.total_seconds() / 60)
    over = timedelta(minutes=whole_minutes) > plan.max_window
    parts = ["maintctl", *([policy_flag] if policy_flag else []), "on", "--at", plan.slot_starts_at.astimezone(tz).isoformat(),
             "--for", f"{whole_minutes}m", *(["--force"] if over else []), "--reason", '"..."']
    why = (f"--force: the estimate {format_duration(plan.estimate)} is over the {format_duration(plan.max_window)} policy"
           + (f" (production twice Mock's {format_duration(plan.mock)} with databases)" if plan.databases else "")
           + "; split the work instead if you can") if over else None
    return " ".join(parts), why


def plan_view(plan: Plan, tz: tzinfo, source: str) -> RenderableType:
    """The plan's facts as a two-column table (the suggested command goes below it, unwrapped: ``suggested_on``)."""
    table = Table(show_header=False, title="production window plan")
    table.add_column("what", style="dim", no_wrap=True)
    table.add_column("value")
    table.add_row("Mock took", f"{format_duration(plan.mock)} ({source})")
    table.add_row("databases", "yes: SQL-A then SQL-B, twice Mock's time" if plan.databases else "no")
    fits = Text("fits", style="green") if plan.fits else Text("OVER THE LIMIT", style="bold red")
    table.add_row("production estimate", Text.assemble(f"{format_duration(plan.estimate)} of {format_duration(plan.max_window)} ", fits))
    table.add_row("scope", Text("cut the scope: Mock took more than " + format_duration(plan.cut_scope_after), style="red")
                  if plan.cut_scope else "ok")
    start = plan.slot_starts_at.astimezone(tz)
    table.add_row("next Wednesday slot", f"{start:%a %Y-%m-%d %H:%M %Z} → {plan.slot_ends_at.astimezone(tz):%H:%M}")
    return table
