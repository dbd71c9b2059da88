"""The views an operator asks for dozens of times in a window (``status``, ``on``/``off --dry-run``), as plain text.

Why not rich here, as for ``history`` and ``plan`` (``agent.ops.render``):
importing rich and laying out its tables costs about 30 ms, more than
``consul kv get`` takes in all, and ``maintctl status`` should answer about
as fast. Columns padded to their widest cell read the same in a terminal,
a pipe or a log; on a terminal the state and the problems are coloured
(``NO_COLOR`` turns that off).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime, tzinfo
from typing import TextIO

from agent.core.gates import roles_in_direction
from agent.core.model import DEFAULT_ORDER, Intent, State
from agent.ops.fleet import FleetSnapshot

_ANSI = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "cyan": "36"}
_STATE_STYLE = {"active": "green", "maintenance": "yellow", "entering": "cyan", "exiting": "cyan"}
Cell = str | tuple[str, str]
"""A cell's text, or (text, style) with style words from ``_ANSI`` ("bold red")."""


def color_wanted(stream: TextIO) -> bool:
    """Colour for a terminal, unless ``NO_COLOR`` is set (https://no-color.org)."""
    return stream.isatty() and "NO_COLOR" not in os.environ


def _paint(text: str, style: str, color: bool) -> str:
    codes = ";".join(_ANSI[word] for word in style.split() if word in _ANSI)
    return f"\x1b[{codes}m{text}\x1b[0m" if color and codes and text else text


def _text(cell: Cell) -> str:
    return cell if isinstance(cell, str) else cell[0]


def table(headers: Sequence[str], rows: Sequence[Sequence[Cell]], color: bool) -> str:
    """Columns padded to their widest cell, two spaces apart; the header in bold."""
    widths = [max([len(h), *(len(_text(row[i])) for row in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[Cell], header: bool = False) -> str:
        out = []
        for i, cell in enumerate(cells):
            text, style = (cell, "bold" if header else "") if isinstance(cell, str) else cell
            pad = " " * (widths[i] - len(text)) if i < len(cells) - 1 else ""
            out.append(_paint(text, style, color) + pad)
        return "  ".join(out).rstrip()

    return "\n".join([line(headers, header=True), *(line(row) for row in rows)])


def short_time(text: str | None, tz: tzinfo) -> str:
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


def status_view(snapshot: FleetSnapshot, now: datetime, tz: tzinfo, color: bool = False) -> str:
    """The fleet's phase on top, then one row per box."""
    converged = snapshot.converged and not snapshot.drift()
    header = (f"{_paint('environment', 'dim', color)} {_paint(snapshot.environment, 'bold', color)}  "
              f"{_paint('desired', 'dim', color)} {describe_intent(snapshot.intent, snapshot.intent_error)}\n"
              f"{_paint('phase', 'dim', color)} {_paint(snapshot.phase(now), 'bold ' + ('green' if converged else 'yellow'), color)}")
    rows: list[list[Cell]] = []
    for box in snapshot.boxes:
        status = box.status
        if box.released:
            agent: Cell = "released"
        elif not box.registered:
            agent = ("not registered", "yellow")
        else:
            agent = "alive" if box.alive else ("DOWN", "bold red")
        if status is None:
            rows.append([box.node, ",".join(box.roles), ("unreadable" if box.unreadable else "silent", "bold red"), "-", "-", "-", "-", agent])
            continue
        stale = snapshot.intent is not None and status.intent_index != snapshot.intent.index
        problem = status.error or status.intent_error or (f"drift: {status.drift}" if status.drift else "")
        rows.append([box.node, ",".join(box.roles), (status.state.value, _STATE_STYLE.get(status.state.value, "")),
                     (str(status.intent_index), "red" if stale else ""), short_time(status.since.isoformat(), tz), status.blocked_on or "-",
                     (problem or "-", "red" if problem else ""), agent])
    return header + "\n" + table(("node", "roles", "state", "intent", "since", "blocked on", "error / drift", "agent"), rows, color)


def dry_run_view(snapshot: FleetSnapshot, intent: Intent, tz: tzinfo, color: bool = False) -> str:
    """Which boxes of which roles will act, in which order, with their current state."""
    target = State.settled_for(intent.mode).value
    rows: list[list[Cell]] = []
    step = 0
    for role in roles_in_direction(DEFAULT_ORDER, intent.mode):
        holders = [b for b in snapshot.boxes if role.value in b.roles]
        if not holders:
            continue
        step += 1
        for box in holders:
            current = box.status.progress.get(role.value, box.status.state.value) if box.status else "silent"
            if box.node in intent.release:
                will = "skip (released)"
            elif current == target:
                will = "nothing (already there)"
            else:
                will = f"go {target}" + ("" if box.status else " — agent silent, will block")
            rows.append([str(step), role.value, box.node, current, will])
    when = f"starts {intent.starts_at.astimezone(tz).isoformat()}" if intent.starts_at else "starts as soon as written"
    end = f", announced end {intent.ends_at.astimezone(tz).isoformat()}" if intent.ends_at else ""
    title = _paint(f"plan: {describe_intent(intent, None, written=False)} → every box {target}", "bold", color)
    footer = _paint(f"{when}{end}\ndry run: nothing written ({snapshot.desired_key} stays at index {snapshot.desired_modify_index})",
                    "dim", color)
    return "\n".join([title, table(("step", "role", "box", "current state", "will"), rows, color), footer])
