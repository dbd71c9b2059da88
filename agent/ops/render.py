"""How maintctl shows things in a terminal: rich tables and headers, built from snapshots and records.

Kept apart from the command definitions so ``maintctl.py`` only wires options
to actions, and so every table is built from immutable data (a
``FleetSnapshot``, a ``WindowRecord``, a ``Plan``) with no Consul in sight.
"""

from __future__ import annotations

import math
from datetime import datetime, tzinfo

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from agent.core.gates import roles_in_direction
from agent.core.model import DEFAULT_ORDER, Intent, State
from agent.core.planning import Plan, format_duration
from agent.ops.fleet import FleetSnapshot
from agent.ops.history import WindowRecord
from agent.ops.summary import dry_run_summary, summary_view

_STATE_STYLE = {"active": "green", "maintenance": "yellow", "entering": "cyan", "exiting": "cyan"}


def _short_time(text: str | None, tz: tzinfo) -> str:
    if not text:
        return "-"
    try:
        return datetime.fromisoformat(text).astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError):
        return text


def describe_intent(intent: Intent | None, error: str | None, written: bool = True) -> str:
    """One line for an intent; ``written=False`` for one not (yet) in Consul, so index 0 means nothing."""
    if intent is None:
        return f"invalid ({error})"
    if written and intent.index == 0:
        return "active (no desired key)"
    parts = [f"{intent.mode.value} (intent {intent.index})" if written else intent.mode.value]
    if intent.by or intent.reason:
        parts.append(f"by {intent.by or '?'}: {intent.reason or 'no reason given'}")
    if intent.ends_at:
        parts.append(f"until {intent.ends_at.isoformat()}")
    if intent.release:
        parts.append("released: " + ", ".join(intent.release))
    return " — ".join(parts)


#: Above this many boxes ``status`` shows one row per role (``summary_view``) unless asked for every box.
SUMMARY_ABOVE = 30


def status_view(snapshot: FleetSnapshot, now: datetime, tz: tzinfo, full: bool | None = None) -> RenderableType:
    """The fleet's phase on top, then one row per box (``full``), or per role (a large fleet's default)."""
    phase = snapshot.phase(now)
    header = Text.assemble(
        ("environment ", "dim"), (snapshot.environment, "bold"), ("  desired ", "dim"),
        describe_intent(snapshot.intent, snapshot.intent_error), "\n",
        ("phase ", "dim"), (phase, "bold " + ("green" if snapshot.converged else "yellow")),
    )
    if not (full if full is not None else len(snapshot.boxes) <= SUMMARY_ABOVE):
        return summary_view(snapshot, header)
    table = Table(show_lines=False, expand=False)
    for column in ("node", "roles", "state", "intent", "since", "blocked on", "error", "agent"):
        table.add_column(column, overflow="fold")
    for box in snapshot.boxes:
        status = box.status
        if box.released:
            agent = "released"
        elif not box.registered:
            agent = "not registered"
        else:
            agent = "alive" if box.alive else "DOWN"
        if status is None:
            state = Text("unreadable" if box.unreadable else "silent", style="bold red")
            table.add_row(box.node, ",".join(box.roles), state, "-", "-", "-", "-", agent)
            continue
        stale = snapshot.intent is not None and status.intent_index != snapshot.intent.index
        intent_cell = Text(str(status.intent_index), style="red" if stale else "")
        error = status.error or status.intent_error or ""
        table.add_row(box.node, ",".join(box.roles), Text(status.state.value, style=_STATE_STYLE.get(status.state.value, "")),
                      intent_cell, _short_time(status.since.isoformat(), tz), status.blocked_on or "", Text(error, style="red"), agent)
    return Group(header, table)


def dry_run_view(snapshot: FleetSnapshot, intent: Intent, tz: tzinfo, full: bool | None = None) -> RenderableType:
    """Which boxes of which roles will act, in which order, with their current state (per role above ``SUMMARY_ABOVE`` boxes)."""
    target = State.settled_for(intent.mode).value
    table = Table(title=f"plan: {describe_intent(intent, None, written=False)} → every box {target}")
    for column in ("step", "role", "box", "current state", "will"):
        table.add_column(column)
    step = 0
    summarized = not (full if full is not None else len(snapshot.boxes) <= SUMMARY_ABOVE)
    for role in roles_in_direction(DEFAULT_ORDER, intent.mode) if not summarized else ():
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
            table.add_row(str(step), role.value, box.node, current, will)
    if summarized:
        table = dry_run_summary(snapshot, intent)
    when = f"starts {intent.starts_at.astimezone(tz).isoformat()}" if intent.starts_at else "starts as soon as written"
    end = f", announced end {intent.ends_at.astimezone(tz).isoformat()}" if intent.ends_at else ""
    footer = Text(f"{when}{end}\ndry run: nothing written ({snapshot.desired_key} stays at index {snapshot.desired_modify_index})", style="dim")
    return Group(table, footer)


def history_view(records: list[WindowRecord], now: datetime, tz: tzinfo) -> RenderableType:
    table = Table(title="maintenance windows, newest first")
    for column in ("opened", "by", "reason", "planned", "maintenance reached", "exit started", "active again", "took", "overrun"):
        table.add_column(column, overflow="fold")
    for record in records:
        duration, overrun = record.duration, record.overrun(now)
        took: str | Text = format_duration(duration) if duration is not None else Text("open", style="yellow")
        overrun_cell = Text(f"yes, {format_duration(overrun)}", style="red") if overrun else "no"
        exit_started = _short_time(record.closed.at, tz) if record.closed else "-"
        reason = record.opened.reason + (f" (released {', '.join(r.node for r in record.releases)})" if record.releases else "")
        table.add_row(_short_time(record.opened.at, tz), record.opened.by, reason, format_duration(record.planned),
                      _short_time(record.maintenance_reached, tz), exit_started, _short_time(record.active_reached, tz),
                      took, overrun_cell)
    return table


def plan_view(plan: Plan, tz: tzinfo, source: str) -> RenderableType:
    table = Table(show_header=False, title="production window plan")
    table.add_column("what", style="dim")
    table.add_column("value")
    table.add_row("Mock took", f"{format_duration(plan.mock)} ({source})")
    table.add_row("databases", "yes: SQL-A then SQL-B, twice Mock's time" if plan.databases else "no")
    fits = Text("fits", style="green") if plan.fits else Text("OVER THE LIMIT", style="bold red")
    table.add_row("production estimate", Text.assemble(f"{format_duration(plan.estimate)} of {format_duration(plan.max_window)} ", fits))
    table.add_row("scope", Text("cut the scope: Mock took more than " + format_duration(plan.cut_scope_after), style="red")
                  if plan.cut_scope else "ok")
    start = plan.slot_starts_at.astimezone(tz)
    table.add_row("next Wednesday slot", f"{start:%a %Y-%m-%d %H:%M %Z} → {plan.slot_ends_at.astimezone(tz):%H:%M}")
    whole_minutes = math.ceil(plan.estimate.total_seconds() / 60)
    table.add_row("command", f"maintctl on --at {start.isoformat()} --for {whole_minutes}m --reason ...")
    return table
