"""The views an operator asks for dozens of times in a window (``status``, ``on``/``off --dry-run``), as plain text.

Why not rich here, as for ``history`` and ``plan`` (``agent.ops.render``):
importing rich and laying out its tables costs about 30 ms, more than
``consul kv get`` takes in all, and ``maintctl status`` should answer about
as fast. The layout rules are the ones an operator reads at 80 columns as
well as at 160: names, states and times are never broken; when the screen is
too narrow the less important columns go first; only the notes column wraps;
each distinct error is written once, below the table, and the rows point at
it (``error 1``). On a terminal the state and the problems are coloured
(``NO_COLOR`` turns that off).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import datetime, tzinfo
from typing import TextIO

from agent.core.gates import roles_in_direction
from agent.core.model import Intent, State
from agent.ops.fleet import BoxView, FleetSnapshot
from agent.ops.summary import KINDS, PROBLEMS, RoleSummary, plan_by_role, shown_names, summarize

WIDE = 120
"""From this many columns on, every column is shown with full dates; below, the less important ones go first."""
GAP = "  "
SUMMARY_ABOVE = 30
"""Above this many boxes ``status`` and the dry runs show a row per role, unless asked for every box (``--full``)."""
LISTED = 8
"""Problem boxes named per role and kind in a summary; the rest are counted."""
_ANSI = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "cyan": "36"}
_STATE_STYLE = {"active": "green", "maintenance": "yellow", "entering": "cyan", "exiting": "cyan", "unknown": "bold red"}

Span = tuple[str, str]
"""A piece of text and its style words from ``_ANSI`` ("bold red"; "" for none)."""
Cell = str | Span | list[Span]


def color_wanted(stream: TextIO) -> bool:
    """Colour for a terminal, unless ``NO_COLOR`` is set (https://no-color.org)."""
    return stream.isatty() and "NO_COLOR" not in os.environ


def _paint(text: str, style: str, color: bool) -> str:
    codes = ";".join(_ANSI[word] for word in style.split() if word in _ANSI)
    return f"\x1b[{codes}m{text}\x1b[0m" if color and codes and text else text


def _spans(cell: Cell) -> list[Span]:
    if isinstance(cell, str):
        return [(cell, "")]
    if isinstance(cell, tuple):
        return [cell]
    return cell


def _length(cell: Cell) -> int:
    return sum(len(text) for text, _ in _spans(cell))


def _show(spans: Sequence[Span], color: bool) -> str:
    return "".join(_paint(text, style, color) for text, style in spans)


def wrap(spans: Sequence[Span], width: int) -> list[list[Span]]:
    """Spans in lines of at most ``width`` characters, broken between words (a word longer than a line is cut)."""
    words: list[Span] = [(word, style) for text, style in spans for word in text.split()]
    lines: list[list[Span]] = [[]]
    used = 0
    for word, style in words:
        while len(word) > width:  # only a word wider than the whole line is cut
            if used:
                lines.append([])
            lines[-1].append((word[:width], style))
            lines.append([])
            word, used = word[width:], 0
        if used and used + 1 + len(word) > width:
            lines.append([])
            used = 0
        if used:
            lines[-1].append((" ", ""))
            used += 1
        lines[-1].append((word, style))
        used += len(word)
    return [line for line in lines if line] or [[]]


def fit(rows: Sequence[Mapping[str, Cell]], columns: Sequence[str], width: int, droppable: Sequence[str],
        flexible: str = "", flexible_min: int = 14) -> tuple[str, ...]:
    """The columns that fit ``width``: whole values in every column but ``flexible`` (which wraps, at least
    ``flexible_min`` wide); ``droppable`` columns go, first to last, until the rest fits."""
    kept = list(columns)

    def needed() -> int:
        total = 0
        for column in kept:
            longest = max([len(column), *(_length(r.get(column, "")) for r in rows)])
            total += min(longest, flexible_min) if column == flexible else longest
        return total + len(GAP) * (len(kept) - 1)

    for column in droppable:
        if needed() <= width:
            break
        kept.remove(column)
    return tuple(kept)


def table(columns: Sequence[str], rows: Sequence[Mapping[str, Cell]], width: int, color: bool, flexible: str = "",
          flexible_min: int = 14) -> list[str]:
    """Columns padded to their widest cell, ``GAP`` apart, the header in bold; ``flexible`` wraps within what is left."""
    widths = {c: max([len(c), *(_length(r.get(c, "")) for r in rows)]) for c in columns}
    if flexible in widths:
        rest = sum(w for c, w in widths.items() if c != flexible) + len(GAP) * (len(columns) - 1)
        widths[flexible] = min(widths[flexible], max(flexible_min, width - rest))
    out = []
    for index, row in enumerate([{c: (c, "bold") for c in columns}, *rows]):
        cells = {c: wrap(_spans(row.get(c, "")), widths[c]) if c == flexible and index else [_spans(row.get(c, ""))] for c in columns}
        for depth in range(max(len(lines) for lines in cells.values())):
            parts = []
            for c in columns:
                spans = cells[c][depth] if depth < len(cells[c]) else []
                parts.append(_show(spans, color) + " " * (widths[c] - _length(spans)))
            out.append(GAP.join(parts).rstrip())
    return out


def when(text: str | None, tz: tzinfo, now: datetime | None = None, wide: bool = True) -> str:
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


def _lines(spans: Sequence[Span], width: int, color: bool) -> list[str]:
    return [_show(line, color) for line in wrap(spans, width)]


def _agent_cell(box: BoxView) -> Span:
    if box.released:
        return ("released", "yellow")
    if not box.registered:
        return ("unregistered", "red")
    return ("alive", "") if box.alive else ("DOWN", "bold red")


def _summarized(snapshot: FleetSnapshot, full: bool | None) -> bool:
    return not (full if full is not None else len(snapshot.boxes) <= SUMMARY_ABOVE)


def _role_row(summary: RoleSummary) -> dict[str, Cell]:
    row: dict[str, Cell] = {"role": summary.role}
    for kind in KINDS:
        count = summary.counts[kind]
        row[kind] = (str(count), "bold red" if kind in PROBLEMS and count else "")
    names: list[Span] = []
    for kind in (*PROBLEMS, "blocked"):
        if summary.named[kind]:
            names += [(f"{kind}:", "bold red" if kind in PROBLEMS else "dim"), (shown_names(summary.named[kind], LISTED) + ";", "")]
    row["boxes to look at"] = names or "-"
    return row


def summary_view(snapshot: FleetSnapshot, top: list[str], width: int, color: bool) -> str:
    """A large fleet: the header, then one row per role (how many settled, moving, blocked, failing, dead) naming the problem boxes."""
    rows = [_role_row(summary) for summary in summarize(snapshot)]
    errors: dict[str, list[str]] = {}
    for box in snapshot.boxes:
        error = box.status and (box.status.error or box.status.intent_error)
        if error and not box.released:
            errors.setdefault(error, []).append(box.node)
    out = [*top, *table(("role", *KINDS, "boxes to look at"), rows, width, color, flexible="boxes to look at")]
    for error, nodes in list(errors.items())[:LISTED]:
        out += _lines([("error", "bold red"), (shown_names(nodes, LISTED) + ":", "bold"), (error, "")], width, color)
    if len(errors) > LISTED:
        out += _lines([(f"(+{len(errors) - LISTED} more distinct errors)", "dim")], width, color)
    out += order_conflict_lines(snapshot, width, color)
    return "\n".join([*out, *_lines([(f"{len(snapshot.boxes)} boxes; every box: maintctl status --full (or --json)", "dim")], width, color)])


def status_view(snapshot: FleetSnapshot, now: datetime, tz: tzinfo, width: int = WIDE, color: bool = False,
                full: bool | None = None) -> str:
    """The fleet's phase on top, one row per box, then each distinct error (and each reported drift) once;
    above ``SUMMARY_ABOVE`` boxes a row per role instead (``full`` decides either way).

    Below ``WIDE`` columns the intent column folds into the notes (only a box on another
    intent says so) and times lose their date when it is today; names and states stay whole.
    """
    wide = width >= WIDE
    converged = snapshot.converged and not snapshot.drift()
    head = [("environment", "dim"), (snapshot.environment, "bold"), ("desired", "dim"),
            (describe_intent(snapshot.intent, snapshot.intent_error, tz=tz), "")]
    phase = [("phase", "dim"), (snapshot.phase(now), "bold " + ("green" if converged else "yellow"))]
    if _summarized(snapshot, full):
        return summary_view(snapshot, [*_lines(head, width, color), *_lines(phase, width, color)], width, color)
    errors: dict[str, int] = {}
    drifts: dict[str, list[str]] = {}
    rows: list[dict[str, Cell]] = []
    for box in snapshot.boxes:
        status = box.status
        row: dict[str, Cell] = {"node": box.node, "roles": ",".join(box.roles), "agent": _agent_cell(box), "intent": "-", "since": "-"}
        notes: list[Span] = [(box.twin_conflict, "bold red")] if box.twin_conflict else []
        if status is None:
            row["state"] = ("unreadable" if box.unreadable else "silent", "bold red")
            notes.append(("no status: " + ("cannot parse it" if box.unreadable else "agent down or not started"), "red"))
        else:
            stale = snapshot.intent is not None and status.intent_index != snapshot.intent.index
            row["state"] = (status.state.value, _STATE_STYLE.get(status.state.value, ""))
            row["intent"] = (str(status.intent_index), "red" if stale else "")
            row["since"] = when(status.since.isoformat(), tz, now, wide)
            if stale and not wide:
                notes.append((f"on intent {status.intent_index}", "red"))
            if status.blocked_on:
                notes.append((status.blocked_on, ""))
            error = status.error or status.intent_error
            if error:
                notes.append((f"error {errors.setdefault(error, len(errors) + 1)}", "bold red"))
            if status.drift and not box.released:
                drifts.setdefault(status.drift, []).append(box.node)
                notes.append(("drift", "red"))
        row["notes"] = [(text + ("," if i < len(notes) - 1 else ""), style) for i, (text, style) in enumerate(notes)]
        rows.append(row)
    columns = fit(rows, ("node", "roles", "state", "intent", "since", "agent", "notes"), width,
                  droppable=("intent", "since", "agent", "roles"), flexible="notes")
    if "agent" not in columns:
        for row, box in zip(rows, snapshot.boxes, strict=True):
            if not (box.registered and box.alive):
                agent, style = _agent_cell(box)
                row["notes"] = [(agent + ("," if row["notes"] else ""), style), *_spans(row["notes"])]
    out = [*_lines(head, width, color), *_lines(phase, width, color), *table(columns, rows, width, color, flexible="notes")]
    for error, number in errors.items():
        nodes = [b.node for b in snapshot.boxes if b.status and (b.status.error or b.status.intent_error) == error]
        out += _lines([(f"error {number}", "bold red"), (", ".join(nodes) + ":", "bold"), (error, "")], width, color)
    for drift, nodes in drifts.items():
        out += _lines([("drift:", "red"), (drift, ""), (f"(on {', '.join(nodes)})", "bold")], width, color)
    return "\n".join([*out, *order_conflict_lines(snapshot, width, color)])


def order_conflict_lines(snapshot: FleetSnapshot, width: int, color: bool) -> list[str]:
    conflict = snapshot.order_conflict()
    return _lines([("order:", "bold red"), (conflict, "")], width, color) if conflict else []


def dry_run_view(snapshot: FleetSnapshot, intent: Intent, tz: tzinfo, width: int = WIDE, color: bool = False,
                 full: bool | None = None) -> str:
    """Which boxes of which roles will act, in which order, with their current state (box names never cut);
    above ``SUMMARY_ABOVE`` boxes a row per role with the silent boxes named (``full`` decides either way)."""
    target = State.settled_for(intent.mode).value
    title = [(f"plan: {describe_intent(intent, None, written=False, tz=tz)} → every box {target}", "bold")]
    when_text = f"starts {_iso(intent.starts_at, tz)}" if intent.starts_at else "starts as soon as written"
    end = f", announced end {_iso(intent.ends_at, tz)}" if intent.ends_at else ""
    footer = [*_lines([(f"{when_text}{end}", "dim")], width, color),
              *_lines([(f"dry run: nothing written ({snapshot.desired_key} stays at index {snapshot.desired_modify_index})", "dim")],
                      width, color)]
    if _summarized(snapshot, full):
        title.append(("(a row per role; --dry-run --json lists every box)", "dim"))
        per_role = ("step", "role", "boxes", f"will go {target}", "already there", "released", "silent: will block")
        role_rows: list[dict[str, Cell]] = [
            {"step": str(p.step), "role": p.role, "boxes": str(p.boxes), f"will go {target}": str(p.will_act),
             "already there": str(p.already_there), "released": str(p.released),
             "silent: will block": (shown_names(p.silent, LISTED), "bold red") if p.silent else "-"}
            for p in plan_by_role(snapshot, intent)]
        return "\n".join([*_lines(title, width, color), *table(per_role, role_rows, width, color, flexible="silent: will block"), *footer])
    rows: list[dict[str, Cell]] = []
    step = 0
    for role in roles_in_direction(snapshot.order, intent.mode):
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
            rows.append({"step": f"{step} {role.value}", "box": box.node, "now": current, "will": will})
    columns = fit(rows, ("step", "box", "now", "will"), width, droppable=("now",), flexible="will", flexible_min=9)
    return "\n".join([*_lines(title, width, color), *table(columns, rows, width, color, flexible="will", flexible_min=9), *footer])
