"""Log lines to journald with their fields, in journald's native protocol.

Under systemd a service's stderr goes to the journal as text, so a JSON line
would be one opaque ``MESSAGE``. Speaking the native protocol instead (one
datagram of ``FIELD=value`` entries to ``/run/systemd/journal/socket``) keeps
every structlog key a field: ``journalctl -u maintenance-agent NODE=worker-1
STEP=worker-services -o json`` finds the line. No library: the protocol is a
few lines (``systemd.journal-fields(7)``, "Native Journal Protocol").
"""

from __future__ import annotations

import os
import re
import socket
import struct
import sys
from typing import Any

JOURNAL_SOCKET = "/run/systemd/journal/socket"
PRIORITIES = {"critical": 2, "exception": 3, "error": 3, "warning": 4, "warn": 4, "info": 6, "debug": 7}
MAX_VALUE = 32 * 1024
_NOT_A_FIELD_CHAR = re.compile(r"[^A-Z0-9_]")


def stderr_is_the_journal() -> bool:
    """True when systemd connected stderr to the journal (``JOURNAL_STREAM`` names stderr's device and inode)."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    try:
        status = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return bool(expected) and expected == f"{status.st_dev}:{status.st_ino}"


def field_name(key: str) -> str:
    name = _NOT_A_FIELD_CHAR.sub("_", key.upper()).lstrip("_")
    return name[:64] if name and not name[0].isdigit() else f"F_{name}"[:64]


def _entry(name: str, value: str) -> bytes:
    data = value.encode("utf-8", "replace")[:MAX_VALUE]
    if b"\n" not in data:
        return name.encode() + b"=" + data + b"\n"
    return name.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"


def render_journal(_logger: Any, method: str, event_dict: dict[str, Any]) -> bytes:
    """structlog's last processor: the datagram for one line (the event readable in ``MESSAGE``, every key a field)."""
    event = str(event_dict.pop("event", ""))
    level = str(event_dict.pop("level", method))
    event_dict.pop("timestamp", None)  # the journal stamps every entry itself
    shown = " ".join(f"{key}={value}" for key, value in event_dict.items() if key != "exception")
    message = f"{event} {shown}".strip() + (f"\n{event_dict['exception']}" if "exception" in event_dict else "")
    entries = [_entry("MESSAGE", message), _entry("PRIORITY", str(PRIORITIES.get(level, 6))),
               _entry("SYSLOG_IDENTIFIER", "maintenance-agent"), _entry("EVENT", event)]
    entries += [_entry(field_name(key), str(value)) for key, value in event_dict.items()]
    return b"".join(entries)


class JournalLogger:
    """A structlog logger whose every level sends the rendered datagram to journald (falling back to stderr)."""

    def __init__(self, path: str = JOURNAL_SOCKET):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    def msg(self, datagram: bytes) -> None:
        try:
            self.sock.sendto(datagram, self.path)
        except OSError:
            sys.stderr.write(datagram.split(b"\n", 1)[0].decode("utf-8", "replace") + "\n")

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


def journal_logger_factory(*_args: Any) -> JournalLogger:
    return JournalLogger()
