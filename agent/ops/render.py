"""How maintctl shows the history and a plan in a terminal: rich tables built from records.

Kept apart from the command definitions so ``maintctl.py`` only wires options
to actions, and so every table is built from immutable data (a
``WindowRecord``, a ``Plan``) with no Consul in sight. The views run dozens
of times in a window (``status``, dry runs) are plain text: ``agent.ops.views``.
"""

from __future__ import annotations

import math
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from agent.core.planning import Plan, format_duration
from agent.ops.views import short_time as _short_time

if TYPE_CHECKING:
    from agent.ops.history import WindowRecord


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
