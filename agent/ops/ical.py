"""The maintenance window as an iCalendar (RFC 5545) file partners can import, mail or publish.

Written by hand rather than with a library so the agent and maintctl need no
extra runtime dependency: one VEVENT with a stable UID per environment and
intent, UTC times, escaped text and lines folded at 75 octets with CRLF, as the
RFC asks. A withdrawn window is the same event with ``STATUS:CANCELLED`` and a
higher ``SEQUENCE`` (calendar clients then remove it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

PRODID = "-//maintenance-agent//maintenance window//EN"


@dataclass(frozen=True)
class CalendarWindow:
    """What the calendar entry says: when, what, and how to recognise it again (uid, sequence)."""

    uid: str
    starts_at: datetime
    ends_at: datetime
    summary: str
    description: str
    sequence: int = 0
    cancelled: bool = False
    url: str = ""


def escape_text(text: str) -> str:
    """RFC 5545 §3.3.11 TEXT: backslash, semicolon, comma and newlines escaped."""
    return (text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
            .replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n"))


def fold(line: str) -> str:
    """RFC 5545 §3.1: lines longer than 75 octets continue on the next line after CRLF and a space."""
    out: list[str] = []
    current = ""
    size = 0
    limit = 75
    for char in line:
        width = len(char.encode("utf-8"))
        if size + width > limit:
            out.append(current)
            current, size, limit = " ", 1, 75
        current += char
        size += width
    out.append(current)
    return "\r\n".join(out)


def _utc(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def to_ics(window: CalendarWindow, now: datetime) -> str:
    """The whole ``.ics`` document (CRLF line ends) for one window."""
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{PRODID}",
        "CALSCALE:GREGORIAN",
        f"METHOD:{'CANCEL' if window.cancelled else 'PUBLISH'}",
        "BEGIN:VEVENT",
        f"UID:{window.uid}",
        f"DTSTAMP:{_utc(now)}",
        f"DTSTART:{_utc(window.starts_at)}",
        f"DTEND:{_utc(window.ends_at)}",
        f"SEQUENCE:{window.sequence}",
        f"STATUS:{'CANCELLED' if window.cancelled else 'CONFIRMED'}",
        "TRANSP:OPAQUE",
        f"SUMMARY:{escape_text(window.summary)}",
        f"DESCRIPTION:{escape_text(window.description)}",
    ]
    if window.url:
        lines.append(f"URL:{window.url}")
    lines += ["END:VEVENT", "END:VCALENDAR"]
    return "".join(fold(line) + "\r\n" for line in lines)
