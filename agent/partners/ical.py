"""The maintenance window as iCalendar (RFC 5545): a file partners import, or an invitation mailed to them.

Written by hand rather than with a library so the agent and maintctl need no
extra runtime dependency: one VEVENT with a stable UID per window, UTC times,
escaped text and lines folded at 75 octets with CRLF, as the RFC asks. Mailed,
it is an iTIP (RFC 5546) ``METHOD:REQUEST`` with the organizer and the
partner's addresses as attendees (no reply asked: ``RSVP=FALSE``), so the
window sits in their calendar; a moved window is the same UID with a higher
``SEQUENCE``, and a withdrawn one ``METHOD:CANCEL`` with ``STATUS:CANCELLED``
(calendar clients then move, resp. remove, the entry).
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
    #: An invitation (``METHOD:REQUEST``/``CANCEL``) names who sends it and to whom; a file for import does not.
    organizer: str = ""
    organizer_name: str = ""
    attendees: tuple[str, ...] = ()

    @property
    def method(self) -> str:
        if self.cancelled:
            return "CANCEL"
        return "REQUEST" if self.organizer else "PUBLISH"


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


def _param(text: str) -> str:
    """A parameter value (RFC 5545 §3.2): quoted, without the characters a quoted value cannot hold."""
    return '"' + "".join(c for c in text if c not in '"\r\n') + '"'


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
        f"METHOD:{window.method}",
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
    if window.organizer:
        name = f";CN={_param(window.organizer_name)}" if window.organizer_name else ""
        lines.append(f"ORGANIZER{name}:mailto:{window.organizer}")
    lines += [f"ATTENDEE;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=FALSE:mailto:{a}" for a in window.attendees]
    lines += ["END:VEVENT", "END:VCALENDAR"]
    return "".join(fold(line) + "\r\n" for line in lines)
