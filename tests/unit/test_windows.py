"""EntryScheduler: date jobs that only wake the reconciler, re-armed or cancelled with the intent."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog

from agent.core.model import Intent, Mode, Role, State
from agent.daemon.local.metrics import AgentMetrics
from agent.daemon.watches.windows import END_JOB, START_JOB, EntryScheduler, moments_to_wake
from tests.fakes import make_reconciler, read, sample, settle

NOW = datetime(2026, 12, 2, 21, 0, tzinfo=UTC)


def test_moments_to_wake_only_future_moments_of_a_maintenance_intent() -> None:
    later, end = NOW + timedelta(minutes=5), NOW + timedelta(minutes=50)
    assert moments_to_wake(Intent(Mode.MAINTENANCE, 3, starts_at=later, ends_at=end), NOW) == {START_JOB: later, END_JOB: end}
    assert moments_to_wake(Intent(Mode.MAINTENANCE, 3, starts_at=NOW - timedelta(seconds=1), ends_at=end), NOW) == {END_JOB: end}
    assert moments_to_wake(Intent(Mode.ACTIVE, 4, starts_at=later, ends_at=end), NOW) == {}
    assert moments_to_wake(Intent(Mode.MAINTENANCE, 5), NOW) == {}


def test_armed_job_wakes_at_the_start_and_not_before() -> None:
    woke = threading.Event()
    scheduler = EntryScheduler(wake=woke.set, log=structlog.get_logger())
    scheduler.start()
    try:
        start = datetime.now(UTC) + timedelta(seconds=0.6)
        scheduler.arm(Intent(Mode.MAINTENANCE, 7, starts_at=start))
        assert set(scheduler.scheduled()) == {START_JOB}
        assert not woke.wait(0.3)
        assert woke.wait(2.0)
        assert datetime.now(UTC) >= start
        assert scheduler.scheduled() == {}
    finally:
        scheduler.stop()


def test_withdrawn_or_replaced_intent_cancels_or_moves_the_job() -> None:
    woke = threading.Event()
    scheduler = EntryScheduler(wake=woke.set, log=structlog.get_logger())
    scheduler.start()
    try:
        soon = datetime.now(UTC) + timedelta(seconds=0.5)
        scheduler.arm(Intent(Mode.MAINTENANCE, 7, starts_at=soon))
        scheduler.arm(Intent(Mode.ACTIVE, 8))
        assert scheduler.scheduled() == {}
        assert not woke.wait(1.0)
        later = datetime.now(UTC) + timedelta(hours=1)
        scheduler.arm(Intent(Mode.MAINTENANCE, 9, starts_at=later, ends_at=later + timedelta(minutes=30)))
        moved = later + timedelta(minutes=10)
        scheduler.arm(Intent(Mode.MAINTENANCE, 10, starts_at=moved, ends_at=moved + timedelta(minutes=30)))
        assert scheduler.scheduled() == {START_JOB: moved, END_JOB: moved + timedelta(minutes=30)}
    finally:
        scheduler.stop()


def test_reconciler_hands_every_accepted_intent_to_the_hook_and_holds_until_start(tmp_path: Path) -> None:
    rec, published = make_reconciler(tmp_path, [Role.WEB], {Role.WEB: []})
    seen: list[int] = []
    rec.on_intent = lambda intent: seen.append(intent.index)
    start = datetime.now(UTC) + timedelta(hours=1)
    rec.on_watch_event(read(f'{{"mode": "maintenance", "starts_at": "{start.isoformat()}"}}'.encode(), 21))
    settle(rec)
    assert seen == [21]
    assert rec.state is State.ACTIVE
    assert published[-1].scheduled_for == start.isoformat()
    assert published[-1].blocked_on == f"scheduled for {start.isoformat()}"
    rec.on_watch_event(read(b"off", 22))
    settle(rec)
    assert seen == [21, 22] and rec.state is State.ACTIVE and published[-1].scheduled_for is None


def test_a_failing_hook_does_not_stop_the_decisions(tmp_path: Path) -> None:
    rec, published = make_reconciler(tmp_path, [Role.WEB], {Role.WEB: []})

    def broken(intent: Intent) -> None:
        raise RuntimeError("scheduler gone")

    rec.on_intent = broken
    transitions: list[tuple[str, str]] = []
    rec.on_transition = lambda source, dest, intent: transitions.append((source.value, dest.value))
    rec.on_watch_event(read(b"on", 5))
    settle(rec)
    assert rec.state is State.MAINTENANCE
    assert transitions == [("active", "entering"), ("entering", "maintenance")]


def test_the_scheduled_start_is_exported_for_alerting() -> None:
    metrics = AgentMetrics()
    scheduler = EntryScheduler(wake=lambda: None, log=structlog.get_logger(), start_gauge=metrics.window_start)
    start = datetime.now(UTC) + timedelta(hours=2)
    scheduler.arm(Intent(Mode.MAINTENANCE, 3, starts_at=start))
    assert sample(metrics, "maintenance_window_start_timestamp_seconds") == start.timestamp()
    scheduler.arm(Intent(Mode.ACTIVE, 4))
    assert sample(metrics, "maintenance_window_start_timestamp_seconds") == 0
