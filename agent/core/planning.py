"""Window planning rules and the small parsers operators type: pure, no I/O, no clock.

Why a module of its own: the rules of the procedure (a window is planned for
at most 60 minutes; production takes Mock's time, twice that when databases
are touched because SQL-A and SQL-B are done one after the other; more than
30 minutes on Mock means the scope should shrink; windows go on Wednesdays)
are policy, and policy must be testable with fixed dates, without Consul and
without the wall clock. ``maintctl`` passes ``now`` in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WEDNESDAY = 2  # datetime.weekday()
DEFAULT_MAX_WINDOW = timedelta(minutes=60)
DEFAULT_CUT_SCOPE_AFTER = timedelta(minutes=30)
DEFAULT_SLOT_TIME = time(22, 0)

_DURATION = re.compile(r"^(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$")
_CLOCK = re.compile(r"^(?P<h>[01]?\d|2[0-3]):(?P<m>[0-5]\d)$")


class PlanningError(ValueError):
    """An operator typed a duration, time or zone that cannot be understood or is not allowed."""


def parse_duration(text: str) -> timedelta:
    """``45m``, ``1h30m``, ``90s``, ``2h``; a bare number means minutes. Zero is refused."""
    raw = text.strip().lower().replace(" ", "")
    if raw.isdigit():
        raw += "m"
    match = _DURATION.match(raw)
    if not raw or not match or not any(match.groupdict().values()):
        raise PlanningError(f"{text!r} is not a duration like 45m, 1h30m or 90s")
    parts = {k: int(v or 0) for k, v in match.groupdict().items()}
    value = timedelta(hours=parts["h"], minutes=parts["m"], seconds=parts["s"])
    if value <= timedelta(0):
        raise PlanningError(f"{text!r} is not a positive duration")
    return value


def format_duration(value: timedelta) -> str:
    """``1h05m``, ``45m``, ``50s``: the inverse of ``parse_duration`` for display."""
    total = value.total_seconds()
    if 0 < abs(total) < 10 and total != int(total):
        return f"{total:.1f}s"  # in-process test windows take under a second; "0s" would hide them
    seconds = int(round(total))
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{sign}{hours}h{minutes:02d}m"
    if minutes:
        return f"{sign}{minutes}m" + (f"{secs:02d}s" if secs else "")
    return f"{sign}{secs}s"


def zone(name: str | None) -> tzinfo:
    """The named IANA zone, or the system's local zone when ``name`` is empty."""
    if not name:
        local = datetime.now().astimezone().tzinfo
        assert local is not None
        return local
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise PlanningError(f"{name!r} is not a time zone name like Europe/Zurich or UTC") from None


def parse_clock(text: str) -> time:
    match = _CLOCK.match(text.strip())
    if not match:
        raise PlanningError(f"{text!r} is not a local time like 22:00")
    return time(int(match["h"]), int(match["m"]))


def parse_time(text: str, now: datetime, tz: tzinfo) -> datetime:
    """A moment an operator types: ISO-8601 (with or without offset), or ``HH:MM`` today.

    Without an offset the time is local to ``tz``. ``HH:MM`` means today in
    ``tz``; it is never silently moved to tomorrow (a window an hour off is
    worse than a refusal). The result is always timezone-aware.
    """
    raw = text.strip()
    if _CLOCK.match(raw):
        clock = parse_clock(raw)
        return local_datetime(now.astimezone(tz).date(), clock, tz)
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise PlanningError(f"{text!r} is not a time like 22:30, 2026-12-02T22:00 or 2026-12-02T22:00:00+01:00") from None
    if moment.tzinfo is None:
        moment = local_datetime(moment.date(), moment.time(), tz)
    return moment


def local_datetime(day: date, clock: time, tz: tzinfo) -> datetime:
    """``day`` at ``clock`` on the wall clocks of ``tz`` (zoneinfo resolves DST; fold 0 when ambiguous)."""
    return datetime.combine(day, clock, tzinfo=tz)


@dataclass(frozen=True)
class Window:
    """When a window starts and when it is announced to end, validated against the policy."""

    starts_at: datetime
    ends_at: datetime

    @property
    def length(self) -> timedelta:
        return self.ends_at - self.starts_at


def window(now: datetime, start: datetime | None, length: timedelta | None, until: datetime | None,
           max_window: timedelta, force: bool, default_length: timedelta | None = None) -> Window:
    """Validate ``on``'s times: start (default now), and either a length or an end."""
    if length is not None and until is not None:
        raise PlanningError("give either --for or --until, not both")
    starts_at = start or now
    if starts_at < now - timedelta(minutes=1):
        raise PlanningError(f"the start {starts_at.isoformat()} is in the past")
    if until is not None:
        ends_at = until
    else:
        ends_at = starts_at + (length or default_length or max_window)
    if ends_at <= starts_at:
        raise PlanningError(f"the end {ends_at.isoformat()} is not after the start {starts_at.isoformat()}")
    if ends_at - starts_at > max_window and not force:
        raise PlanningError(
            f"a window of {format_duration(ends_at - starts_at)} is longer than the policy maximum of "
            f"{format_duration(max_window)}; shrink it or pass --force")
    return Window(starts_at=starts_at, ends_at=ends_at)


@dataclass(frozen=True)
class Plan:
    """Mock's measured duration turned into a production estimate and a proposed slot."""

    mock: timedelta
    databases: bool
    estimate: timedelta
    max_window: timedelta
    cut_scope_after: timedelta
    slot_starts_at: datetime

    @property
    def fits(self) -> bool:
        return self.estimate <= self.max_window

    @property
    def cut_scope(self) -> bool:
        return self.mock > self.cut_scope_after

    @property
    def slot_ends_at(self) -> datetime:
        return self.slot_starts_at + self.estimate

    def warnings(self) -> list[str]:
        out = []
        if not self.fits:
            out.append(f"estimate {format_duration(self.estimate)} exceeds the {format_duration(self.max_window)} window: split the work")
        if self.cut_scope:
            out.append(f"Mock took {format_duration(self.mock)}, more than {format_duration(self.cut_scope_after)}: cut the scope")
        return out

    def to_dict(self) -> dict[str, object]:
        return {
            "mock_minutes": self.mock.total_seconds() / 60,
            "databases": self.databases,
            "estimate_minutes": self.estimate.total_seconds() / 60,
            "max_window_minutes": self.max_window.total_seconds() / 60,
            "fits": self.fits,
            "cut_scope": self.cut_scope,
            "slot_starts_at": self.slot_starts_at.isoformat(),
            "slot_ends_at": self.slot_ends_at.isoformat(),
            "warnings": self.warnings(),
        }


def production_estimate(mock: timedelta, databases: bool) -> timedelta:
    """Production takes Mock's time; with databases twice that (SQL-A, then SQL-B)."""
    return mock * 2 if databases else mock


def next_wednesday(after: datetime, clock: time, tz: tzinfo) -> datetime:
    """The first Wednesday at ``clock`` (wall time in ``tz``) strictly after ``after``."""
    local = after.astimezone(tz)
    day = local.date() + timedelta(days=(WEDNESDAY - local.weekday()) % 7)
    slot = local_datetime(day, clock, tz)
    if slot <= after:
        slot = local_datetime(day + timedelta(days=7), clock, tz)
    return slot


def plan(mock: timedelta, databases: bool, now: datetime, clock: time, tz: tzinfo,
         max_window: timedelta = DEFAULT_MAX_WINDOW, cut_scope_after: timedelta = DEFAULT_CUT_SCOPE_AFTER) -> Plan:
    if mock <= timedelta(0):
        raise PlanningError("Mock's duration must be positive")
    return Plan(mock=mock, databases=databases, estimate=production_estimate(mock, databases), max_window=max_window,
                cut_scope_after=cut_scope_after, slot_starts_at=next_wednesday(now, clock, tz))
