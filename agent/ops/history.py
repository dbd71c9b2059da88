"""The audit trail of maintenance windows, kept in Consul under ``<prefix>/<env>/history/``.

One JSON record per window, keyed ``history/<UTC timestamp>-<intent index>``
so keys sort by time. ``maintctl on`` opens a record (who, when, why, the
announced window); ``off`` and ``release`` add to it; the phase times are
filled in by whichever maintctl command sees the fleet converge (``wait``,
``status --watch``, ``off``): when the fleet reached maintenance, when it was
active again. Those moments come from the boxes' own ``since`` fields, so a
command that looks late still records when it really happened. A window left
with ``consul kv put`` instead of ``maintctl off`` still gets its end recorded
when maintctl next sees the fleet active; one nobody looks at afterwards
keeps an open end. Every update is a check-and-set (retried a few times), so
two operators watching at once never lose each other's writes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from agent.clients.consul import ConsulKV
from agent.core.errors import CasConflict
from agent.core.model import Mode

UPDATE_ATTEMPTS = 5


@dataclass(frozen=True)
class Request:
    """One operator action on a window: ``on``, ``off`` or ``release``."""

    at: str
    by: str
    reason: str
    intent_index: int
    node: str = ""


@dataclass(frozen=True)
class WindowRecord:
    opened: Request
    starts_at: str
    ends_at: str
    message: str = ""
    maintenance_reached: str | None = None
    closed: Request | None = None
    active_reached: str | None = None
    releases: tuple[Request, ...] = ()
    #: Operators who let traffic back without the alert gate (``maintctl alert-gate override``), with their reasons.
    alert_gate_overrides: tuple[Request, ...] = ()
    #: The intent index of the window ``maintctl on --replace`` put in this one's place (its record goes on from there).
    replaced_by: int | None = None
    key: str = field(default="", compare=False)
    modify_index: int = field(default=0, compare=False)

    # -- derived -------------------------------------------------------------

    @property
    def entering_started(self) -> datetime:
        """Entry began when the intent was written, or at its scheduled start if that was later."""
        return max(_time(self.opened.at), _time(self.starts_at))

    @property
    def withdrawn(self) -> bool:
        """Closed before its start, never reached: nothing happened (the fleet never left active)."""
        return self.closed is not None and self.maintenance_reached is None and _time(self.closed.at) < _time(self.starts_at)

    @property
    def duration(self) -> timedelta | None:
        """How long the window really took: entry began → every box active again."""
        if self.active_reached is None or self.withdrawn:
            return None
        return _time(self.active_reached) - self.entering_started

    @property
    def planned(self) -> timedelta:
        return _time(self.ends_at) - _time(self.starts_at)

    def overrun(self, now: datetime) -> timedelta | None:
        """How far past the announced end the fleet came (or, while still open, already is) back; None if not."""
        if self.withdrawn or (self.replaced_by is not None and self.active_reached is None):
            return None  # never happened, or went on as the window that replaced it
        end = _time(self.active_reached) if self.active_reached else now
        late = end - _time(self.ends_at)
        return late if late > timedelta(0) else None

    @property
    def is_open(self) -> bool:
        return self.active_reached is None and self.replaced_by is None and not self.withdrawn

    def to_json(self) -> str:
        doc = asdict(self)
        doc.pop("key")
        doc.pop("modify_index")
        return json.dumps(doc, sort_keys=True)

    def to_dict(self, now: datetime) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.to_json())
        duration, overrun = self.duration, self.overrun(now)
        doc.update({
            "key": self.key,
            "entering_started": self.entering_started.isoformat(),
            "duration_seconds": duration.total_seconds() if duration is not None else None,
            "planned_seconds": self.planned.total_seconds(),
            "overrun": overrun is not None,
            "overrun_seconds": overrun.total_seconds() if overrun is not None else 0.0,
            "withdrawn": self.withdrawn,
        })
        return doc

    @classmethod
    def from_json(cls, raw: bytes | str, key: str = "", modify_index: int = 0) -> WindowRecord:
        doc = json.loads(raw)
        closed = doc.get("closed")
        return cls(
            opened=Request(**doc["opened"]),
            starts_at=doc["starts_at"], ends_at=doc["ends_at"], message=doc.get("message", ""),
            maintenance_reached=doc.get("maintenance_reached"),
            closed=Request(**closed) if closed else None,
            active_reached=doc.get("active_reached"),
            releases=tuple(Request(**r) for r in doc.get("releases", ())),
            alert_gate_overrides=tuple(Request(**r) for r in doc.get("alert_gate_overrides", ())),
            replaced_by=doc.get("replaced_by"),
            key=key, modify_index=modify_index,
        )


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


class HistoryStore:
    def __init__(self, gateway: ConsulKV, env_prefix: str):
        self.gateway = gateway
        self.prefix = f"{env_prefix.rstrip('/')}/history/"

    def open(self, record: WindowRecord, now: datetime) -> WindowRecord:
        key = f"{self.prefix}{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{record.opened.intent_index:012d}"
        if not self.gateway.put_key(key, record.to_json(), cas=0):
            raise CasConflict(f"history record {key} already exists; not overwritten")
        return replace(record, key=key)

    def records(self) -> list[WindowRecord]:
        """Every readable record, newest first (an unreadable one is skipped, not fatal)."""
        _, items = self.gateway.read_prefix(self.prefix)
        out = []
        for key in sorted(items, reverse=True):
            try:
                out.append(WindowRecord.from_json(items[key].value or b"", key=key, modify_index=items[key].modify_index))
            except (ValueError, KeyError, TypeError):
                continue
        return out

    def latest(self) -> WindowRecord | None:
        records = self.records()
        return records[0] if records else None

    def update_latest(self, change: Callable[[WindowRecord], WindowRecord | None]) -> WindowRecord | None:
        """Apply ``change`` to the newest record with check-and-set; ``change`` returns None for "nothing to do"."""
        for _ in range(UPDATE_ATTEMPTS):
            latest = self.latest()
            if latest is None:
                return None
            changed = change(latest)
            if changed is None or changed == latest:
                return latest
            if self.gateway.put_key(latest.key, changed.to_json(), cas=latest.modify_index):
                return changed
        raise CasConflict(f"history record under {self.prefix} kept changing; gave up after {UPDATE_ATTEMPTS} attempts")

    def record_reached(self, mode: Mode, reached_at: datetime) -> WindowRecord | None:
        """The fleet was seen converged to ``mode`` since ``reached_at``: fill in the phase if it is new."""
        def change(record: WindowRecord) -> WindowRecord | None:
            when = max(reached_at, record.entering_started).isoformat()
            if mode is Mode.MAINTENANCE and record.closed is None and record.maintenance_reached is None:
                return replace(record, maintenance_reached=when)
            if mode is Mode.ACTIVE and record.is_open and (record.closed is not None or record.maintenance_reached is not None):
                return replace(record, active_reached=when)
            return None
        return self.update_latest(change)

    def record_closed(self, request: Request) -> WindowRecord | None:
        def change(record: WindowRecord) -> WindowRecord | None:
            if record.closed is not None or not record.is_open:
                return None
            return replace(record, closed=request)
        return self.update_latest(change)

    def record_replaced(self, by_index: int) -> WindowRecord | None:
        """``maintctl on --replace`` wrote window ``by_index`` in place of the open one: that record ends here."""
        def change(record: WindowRecord) -> WindowRecord | None:
            return replace(record, replaced_by=by_index) if record.is_open else None
        return self.update_latest(change)

    def record_override(self, request: Request) -> WindowRecord | None:
        def change(record: WindowRecord) -> WindowRecord | None:
            return replace(record, alert_gate_overrides=(*record.alert_gate_overrides, request)) if record.is_open else None
        return self.update_latest(change)

    def record_release(self, request: Request) -> WindowRecord | None:
        def change(record: WindowRecord) -> WindowRecord | None:
            return replace(record, releases=(*record.releases, request)) if record.is_open else None
        return self.update_latest(change)
