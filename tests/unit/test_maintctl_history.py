"""The audit trail's rules: which phase is recorded when, duration, overrun, CAS on updates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agent.core.errors import CasConflict
from agent.core.model import Mode
from agent.ops.history import HistoryStore, Request, WindowRecord
from tests.fakes import FakeGateway

T0 = datetime(2026, 12, 2, 21, 0, tzinfo=UTC)


def _store(starts_in: timedelta = timedelta(0), planned: timedelta = timedelta(minutes=30)) -> tuple[FakeGateway, HistoryStore]:
    gw = FakeGateway()
    store = HistoryStore(gw, "maintenance/prod")
    start = T0 + starts_in
    store.open(WindowRecord(opened=Request(at=T0.isoformat(), by="ops", reason="patch", intent_index=7),
                            starts_at=start.isoformat(), ends_at=(start + planned).isoformat()), T0)
    return gw, store


def test_duration_runs_from_entry_start_to_active_again() -> None:
    _, store = _store()
    assert store.record_reached(Mode.ACTIVE, T0 + timedelta(minutes=1)).active_reached is None  # never entered: ignored
    store.record_reached(Mode.MAINTENANCE, T0 + timedelta(minutes=3))
    store.record_reached(Mode.MAINTENANCE, T0 + timedelta(minutes=9))  # seen again later: the first sighting stays
    store.record_closed(Request(at=(T0 + timedelta(minutes=20)).isoformat(), by="ops", reason="done", intent_index=8))
    record = store.record_reached(Mode.ACTIVE, T0 + timedelta(minutes=24))
    assert record is not None
    assert record.maintenance_reached == (T0 + timedelta(minutes=3)).isoformat()
    assert record.duration == timedelta(minutes=24)
    assert record.overrun(T0 + timedelta(hours=5)) is None
    assert record.to_dict(T0)["duration_seconds"] == 24 * 60


def test_overrun_is_measured_against_the_announced_end() -> None:
    _, store = _store(planned=timedelta(minutes=20))
    store.record_reached(Mode.MAINTENANCE, T0 + timedelta(minutes=2))
    open_record = store.latest()
    assert open_record is not None and open_record.is_open
    assert open_record.overrun(T0 + timedelta(minutes=25)) == timedelta(minutes=5)  # still open, already late
    store.record_closed(Request(at=(T0 + timedelta(minutes=26)).isoformat(), by="ops", reason="", intent_index=9))
    record = store.record_reached(Mode.ACTIVE, T0 + timedelta(minutes=31))
    assert record is not None and record.overrun(T0 + timedelta(days=1)) == timedelta(minutes=11)
    assert record.to_dict(T0)["overrun"] is True


def test_a_scheduled_window_starts_counting_at_its_start() -> None:
    _, store = _store(starts_in=timedelta(hours=2))
    store.record_reached(Mode.MAINTENANCE, T0 + timedelta(hours=2, minutes=1))
    store.record_closed(Request(at=(T0 + timedelta(hours=2, minutes=10)).isoformat(), by="ops", reason="", intent_index=9))
    record = store.record_reached(Mode.ACTIVE, T0 + timedelta(hours=2, minutes=15))
    assert record is not None and record.duration == timedelta(minutes=15)


def test_updates_use_check_and_set_and_give_up_when_the_record_keeps_changing() -> None:
    gw, store = _store()

    class Busy(FakeGateway):
        def put_key(self, key: str, value: bytes | str, cas: int | None = None, acquire: str | None = None) -> bool:
            super().put_key(key, self.kv[key][0])  # someone else rewrites it first
            return super().put_key(key, value, cas=cas)

    busy = Busy()
    busy.kv = gw.kv
    busy.index = gw.index
    with pytest.raises(CasConflict, match="kept changing"):
        HistoryStore(busy, "maintenance/prod").record_reached(Mode.MAINTENANCE, T0)
    assert store.latest().maintenance_reached is None  # type: ignore[union-attr]
    with pytest.raises(CasConflict, match="already exists"):
        store.open(WindowRecord(opened=Request(at=T0.isoformat(), by="x", reason="", intent_index=7),
                                starts_at=T0.isoformat(), ends_at=T0.isoformat()), T0)


def test_a_window_withdrawn_before_its_start_is_not_open_and_took_nothing() -> None:
    _, store = _store(starts_in=timedelta(hours=2))
    store.record_closed(Request(at=(T0 + timedelta(minutes=10)).isoformat(), by="ops", reason="postponed", intent_index=9))
    assert store.record_reached(Mode.ACTIVE, T0 + timedelta(minutes=11)).active_reached is None  # type: ignore[union-attr]
    record = store.latest()
    assert record is not None and record.withdrawn and not record.is_open
    assert record.duration is None and record.overrun(T0 + timedelta(days=1)) is None
    assert record.to_dict(T0)["withdrawn"] is True


def test_a_replaced_window_ends_where_the_one_replacing_it_begins() -> None:
    _, store = _store(starts_in=timedelta(hours=2))
    store.record_replaced(12)
    replaced = store.latest()
    assert replaced is not None and replaced.replaced_by == 12 and not replaced.is_open and not replaced.withdrawn
    assert replaced.overrun(T0 + timedelta(days=1)) is None
    assert WindowRecord.from_json(replaced.to_json()).replaced_by == 12
    store.record_replaced(13)  # nothing open any more: nothing changes
    assert store.latest() == replaced
