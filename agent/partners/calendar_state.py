"""What partners' calendars hold of the window: one UID per window, a SEQUENCE raised each time it moves.

Every email notice carries the window as an invitation. Calendar clients keep
one entry per UID and apply an update only if its SEQUENCE is higher than the
one they hold, so the senders (maintctl for announce/on/off, the edge agents
for start/end, on different machines) must agree on both. They do through one
Consul key, ``<prefix>/<env>/calendar``, changed with check-and-set:

A window is known by the intent indexes that opened it: the maintenance
intent's, plus each one that replaced it (``maintctl on --replace`` says
which window it replaces; a notice carries it as ``replaces``). So:

- an opening notice (announce, on, start) of a window the ledger does not
  know starts a new entry: UID from its index, SEQUENCE 0; one of the open
  window (or replacing it) moves it: same UID, SEQUENCE + 1 if its times
  differ;
- the ``end`` moves the entry's end to when the window really ended and closes
  it; an ``off`` before the announced start withdraws it (``METHOD:CANCEL``,
  SEQUENCE + 1) and closes it; an ``off`` after the start changes nothing (the
  ``end`` follows); any notice of a closed window mails it as it was closed;
- a notice of a window older than the ledger's is told as it was, and moves
  nothing;
- what a notice got is remembered under its id, so every sender of the same
  notice (two edge boxes, a resumed delivery) mails the same SEQUENCE.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from agent.clients.consul import ConsulKV
from agent.core.errors import CasConflict
from agent.partners.notices import Notice

DEFAULT_LENGTH = timedelta(minutes=60)
"""The calendar entry's length when no end was announced (the policy's longest window)."""

UPDATE_ATTEMPTS = 5


@dataclass(frozen=True)
class CalendarEntry:
    """The window as one invitation shows it."""

    uid_index: int
    sequence: int
    starts_at: str
    ends_at: str
    cancelled: bool = False

    def moved(self, other: CalendarEntry) -> bool:
        return (self.starts_at, self.ends_at, self.cancelled) != (other.starts_at, other.ends_at, other.cancelled)


@dataclass(frozen=True)
class CalendarRecord:
    """The ledger's one window: its entry, every intent index it was opened or replaced under, whether it is over."""

    window_index: int
    entry: CalendarEntry
    closed: bool = False
    notices: dict[str, CalendarEntry] = field(default_factory=dict)
    windows: tuple[int, ...] = ()

    @property
    def indexes(self) -> tuple[int, ...]:
        """The intent indexes this window was opened or replaced under (a record written before they were kept: its own)."""
        return self.windows or (self.window_index,)

    def knows(self, notice: Notice) -> bool:
        """Whether ``notice`` is about this window (its own index, or the one it replaces)."""
        return _window(notice) in self.indexes or (notice.replaces is not None and notice.replaces in self.indexes)

    def newer_than(self, notice: Notice) -> bool:
        return max(self.indexes) > _window(notice)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, raw: bytes) -> CalendarRecord:
        doc: dict[str, Any] = json.loads(raw)
        return cls(window_index=int(doc["window_index"]), entry=CalendarEntry(**doc["entry"]), closed=bool(doc.get("closed")),
                   notices={k: CalendarEntry(**v) for k, v in doc.get("notices", {}).items()},
                   windows=tuple(int(w) for w in doc.get("windows", ())))


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def _window(notice: Notice) -> int:
    return notice.window_index if notice.window_index is not None else notice.intent_index


def next_record(record: CalendarRecord | None, notice: Notice) -> CalendarRecord:
    """The record once ``notice`` is told (pure: the rules of the module's docstring)."""
    window = _window(notice)
    starts = notice.starts_at or notice.sent_at
    ends = notice.ends_at or starts + DEFAULT_LENGTH
    fresh = CalendarRecord(window, CalendarEntry(window, 0, _iso(starts), _iso(ends)), windows=(window,))
    if record is None or not record.knows(notice):
        base = fresh  # a window the ledger has not seen open
    elif record.closed:
        return record  # over: every later notice of it mails it as it was closed
    else:
        base = replace(record, windows=tuple(dict.fromkeys((*record.indexes, window))))
    current = base.entry
    if notice.kind in ("announce", "on", "start"):
        entry = replace(fresh.entry, uid_index=current.uid_index, sequence=current.sequence)
        return replace(base, window_index=window, entry=_bumped(entry, current))
    if notice.kind == "end":
        ended = replace(current, ends_at=_iso(max(notice.sent_at, datetime.fromisoformat(current.starts_at))))
        return replace(base, entry=_bumped(ended, current), closed=True)
    if notice.withdrawn:
        return replace(base, entry=_bumped(replace(current, cancelled=True), current), closed=True)
    return base


def _bumped(entry: CalendarEntry, was: CalendarEntry) -> CalendarEntry:
    return replace(entry, sequence=was.sequence + 1) if entry.moved(was) else entry


class CalendarLedger:
    """Reads and advances ``<prefix>/<env>/calendar``; ``entry_for`` is what one notice's invitation says."""

    def __init__(self, gateway: ConsulKV, key: str):
        self.gateway = gateway
        self.key = key

    def entry_for(self, notice: Notice) -> CalendarEntry:
        """The entry ``notice`` mails: the one remembered for it, else the next one (check-and-set, retried)."""
        for _ in range(UPDATE_ATTEMPTS):
            read = self.gateway.get_key(self.key)
            record = None
            if read.exists:
                try:
                    record = CalendarRecord.from_json(read.value or b"{}")
                except (ValueError, KeyError, TypeError):
                    record = None  # unreadable: start afresh rather than never mail again
            if record is not None and notice.id in record.notices:
                return record.notices[notice.id]
            if record is not None and not record.knows(notice) and record.newer_than(notice):
                return next_record(None, notice).entry  # a late notice of an older window: told as it was, nothing moved
            advanced = next_record(record, notice)
            same = record is not None and advanced.entry.uid_index == record.entry.uid_index
            kept = advanced.notices if same else {}
            stored = replace(advanced, notices={**kept, notice.id: advanced.entry})
            if self.gateway.put_key(self.key, stored.to_json(), cas=read.modify_index if read.exists else 0):
                return advanced.entry
        raise CasConflict(f"{self.key} kept changing; gave up after {UPDATE_ATTEMPTS} attempts")
