"""The window rules and the next-Wednesday slot, with fixed dates (no wall clock)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from agent.core.planning import (
    PlanningError,
    format_duration,
    next_wednesday,
    parse_duration,
    parse_time,
    plan,
    window,
)

ZURICH = ZoneInfo("Europe/Zurich")
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # a Monday


@pytest.mark.parametrize(("mock", "db", "estimate", "fits", "cut"), [
    (25, True, 50, True, False),
    (35, False, 35, True, True),
    (35, True, 70, False, True),
    (30, True, 60, True, False),   # exactly the limit fits; exactly 30 on Mock is not "more than 30"
    (31, False, 31, True, True),
    (61, False, 61, False, True),
])
def test_window_rules(mock: int, db: bool, estimate: int, fits: bool, cut: bool) -> None:
    p = plan(timedelta(minutes=mock), db, NOW, time(22, 0), ZURICH)
    assert p.estimate == timedelta(minutes=estimate)
    assert p.fits is fits
    assert p.cut_scope is cut
    assert len(p.warnings()) == (not fits) + cut


@pytest.mark.parametrize(("after", "tz", "expected_local"), [
    # Monday → the same week's Wednesday
    (datetime(2026, 11, 23, 10, 0, tzinfo=UTC), "Europe/Zurich", datetime(2026, 11, 25, 22, 0)),
    # Wednesday before the slot → today; after it → a week later
    (datetime(2026, 11, 25, 20, 59, tzinfo=UTC), "Europe/Zurich", datetime(2026, 11, 25, 22, 0)),
    (datetime(2026, 11, 25, 21, 0, tzinfo=UTC), "Europe/Zurich", datetime(2026, 12, 2, 22, 0)),
    # across a month end (Friday 27 Feb 2026 → Wednesday 4 March)
    (datetime(2026, 2, 27, 12, 0, tzinfo=UTC), "Europe/Zurich", datetime(2026, 3, 4, 22, 0)),
    # across a year end (Thursday 31 Dec 2026 → Wednesday 6 Jan 2027)
    (datetime(2026, 12, 31, 23, 30, tzinfo=UTC), "Europe/Zurich", datetime(2027, 1, 6, 22, 0)),
    # 10:00 UTC on Wednesday is 23:00 in Auckland (UTC+13): that Wednesday's slot is gone
    (datetime(2026, 12, 2, 10, 0, tzinfo=UTC), "Pacific/Auckland", datetime(2026, 12, 9, 22, 0)),
    # it is already Wednesday in Auckland while still Tuesday in UTC: the local date counts
    (datetime(2026, 12, 1, 12, 0, tzinfo=UTC), "Pacific/Auckland", datetime(2026, 12, 2, 22, 0)),
    (datetime(2026, 12, 1, 8, 0, tzinfo=UTC), "Pacific/Auckland", datetime(2026, 12, 2, 22, 0)),
    # Tuesday evening in New York is Wednesday in UTC: still Wednesday in New York comes next
    (datetime(2026, 12, 2, 2, 0, tzinfo=UTC), "America/New_York", datetime(2026, 12, 2, 22, 0)),
])
def test_next_wednesday(after: datetime, tz: str, expected_local: datetime) -> None:
    slot = next_wednesday(after, time(22, 0), ZoneInfo(tz))
    assert slot.weekday() == 2
    assert slot.replace(tzinfo=None) == expected_local
    assert slot > after


def test_next_wednesday_keeps_wall_time_across_dst() -> None:
    # Europe/Zurich leaves summer time on Sunday 25 October 2026
    slot = next_wednesday(datetime(2026, 10, 23, 12, 0, tzinfo=UTC), time(22, 0), ZURICH)
    assert slot.replace(tzinfo=None) == datetime(2026, 10, 28, 22, 0)
    assert slot.utcoffset() == timedelta(hours=1)
    summer = next_wednesday(datetime(2026, 10, 19, 12, 0, tzinfo=UTC), time(22, 0), ZURICH)
    assert summer.utcoffset() == timedelta(hours=2)


@pytest.mark.parametrize(("text", "minutes"), [("45m", 45), ("1h30m", 90), ("90s", 1.5), ("2h", 120), ("10", 10), (" 1H ", 60)])
def test_parse_duration(text: str, minutes: float) -> None:
    assert parse_duration(text) == timedelta(minutes=minutes)


@pytest.mark.parametrize("text", ["", "45x", "m", "0m", "-5m", "1.5h", "h30"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(PlanningError, match="duration"):
        parse_duration(text)


def test_format_duration() -> None:
    assert format_duration(timedelta(minutes=65)) == "1h05m"
    assert format_duration(timedelta(seconds=50)) == "50s"
    assert format_duration(timedelta(minutes=3, seconds=7)) == "3m07s"
    assert format_duration(timedelta(seconds=0.42)) == "0.4s"


def test_parse_time_forms() -> None:
    assert parse_time("22:30", NOW, ZURICH) == datetime(2026, 11, 23, 22, 30, tzinfo=ZURICH)
    assert parse_time("2026-12-02T22:00", NOW, ZURICH).utcoffset() == timedelta(hours=1)
    assert parse_time("2026-12-02T21:00:00Z", NOW, ZURICH) == datetime(2026, 12, 2, 21, 0, tzinfo=UTC)
    for bad in ("25:00", "tomorrow", "2026-13-01T00:00"):
        with pytest.raises(PlanningError, match="not a time"):
            parse_time(bad, NOW, ZURICH)


def test_window_policy() -> None:
    max_window = timedelta(minutes=60)
    w = window(NOW, None, timedelta(minutes=45), None, max_window, force=False)
    assert (w.starts_at, w.length) == (NOW, timedelta(minutes=45))
    with pytest.raises(PlanningError, match="longer than the policy maximum of 1h00m; shrink it or pass --force"):
        window(NOW, None, timedelta(minutes=90), None, max_window, force=False)
    assert window(NOW, None, timedelta(minutes=90), None, max_window, force=True).length == timedelta(minutes=90)
    with pytest.raises(PlanningError, match="not after the start"):
        window(NOW, None, None, NOW - timedelta(minutes=5), max_window, force=False)
    with pytest.raises(PlanningError, match="in the past"):
        window(NOW, NOW - timedelta(hours=1), timedelta(minutes=5), None, max_window, force=False)
    with pytest.raises(PlanningError, match="not both"):
        window(NOW, None, timedelta(minutes=5), NOW + timedelta(minutes=5), max_window, force=False)
    later = window(NOW, NOW + timedelta(days=2), None, NOW + timedelta(days=2, minutes=30), max_window, force=False)
    assert later.length == timedelta(minutes=30)
