"""How maintctl shows the history, a plan and a followed fleet's changes in a terminal: rich tables and lines.

Kept apart from the command definitions so ``maintctl.py`` only wires options
to actions, and so every table is built from immutable data (a
``WindowRecord``, a ``Plan``, a ``Change``) with no Consul in sight. The views
run dozens of times in a window (``status``, the dry runs) are plain text with
the same width rules: ``agent.ops.views``.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, tzinfo

from rich import box as borders
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from agent.core.planning import Plan, format_duration
from agent.ops.follow import Change
from agent.ops.history import WindowRecord
from agent.ops.views import WIDE
from agent.ops.views import when as _when


def _table(*columns: str, no_wrap: tuple[str, ...] = (), flexible: str = "", **options: object) -> Table:
    """A table whose named columns never break a value across lines (names, states, times); ``flexible`` takes the rest."""
    table = Table(box=borders.SIMPLE_HEAD, show_edge=False, pad_edge=False, **options)  # type: ignore[arg-type]
    for column in columns:
        table.add_column(column, no_wrap=column in no_wrap, overflow="fold", ratio=1 if column == flexible else None)
    return table


_CHANGE_STYLE = {"phase": ("·", "dim"), "failed": ("✗ error", "bold red"), "recovered": ("✓ cleared", "green")}


def change_line(change: Change, now: datetime, tz: tzinfo) -> Text:
    """One line per change while following a fleet: ``22:04:31 ✗ error worker-1 [worker] services: …``."""
    mark, style = _CHANGE_STYLE.get(change.kind, ("·", ""))
    return Text.assemble((f"{now.astimezone(tz):%H:%M:%S} ", "dim"), (mark, style), " ", change.text)


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
        reason += f" (alert gate overridden by {', '.join(r.by for r in record.alert_gate_overrides)})" if record.alert_gate_overrides else ""
        row: dict[str, RenderableType] = {
            "opened": _when(record.opened.at, tz, None, wide), "by": record.opened.by, "reason": reason,
            "planned": format_duration(record.planned),
            "maintenance reached": _when(record.maintenance_reached, tz), "exit started": _when(record.closed.at, tz) if record.closed else "-",
            "active again": _when(record.active_reached, tz),
            "took": _took(record, duration),
            "overrun": Text(f"yes, {format_duration(overrun)}", style="red") if overrun else "no",
        }
        table.add_row(*(row[c] for c in columns))
    return table


def _took(record: WindowRecord, duration: timedelta | None) -> RenderableType:
    if record.withdrawn:
        return Text("withdrawn", style="dim")
    if duration is not None:
        return format_duration(duration)
    if record.replaced_by is not None:
        return Text(f"replaced ({record.replaced_by})", style="dim")
    return Text("open", style="yellow")


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
