"""The window's .ics parses with the icalendar library and says the right start, end and summary."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import icalendar

from agent.partners.ical import CalendarWindow, fold, to_ics

START = datetime(2026, 12, 2, 22, 0, tzinfo=timezone(timedelta(hours=1)))


def _window(**extra: object) -> CalendarWindow:
    doc: dict = dict(uid="maintenance-prod-40@payments.example", starts_at=START, ends_at=START + timedelta(minutes=45),
                     summary="Planned maintenance: prod, API answers 503; back, at 23:45", description="Line one.\nLine two; with, commas \\ and ü " * 4)
    doc.update(extra)
    return CalendarWindow(**doc)


def test_ics_parses_with_the_right_start_end_and_summary() -> None:
    text = to_ics(_window(), now=datetime(2026, 11, 30, 9, 0, tzinfo=UTC))
    assert text.endswith("\r\n") and all(len(line.encode()) <= 75 for line in text.split("\r\n"))
    calendar = icalendar.Calendar.from_ical(text)
    events = list(calendar.walk("VEVENT"))
    assert len(events) == 1
    event = events[0]
    assert event.decoded("DTSTART") == datetime(2026, 12, 2, 21, 0, tzinfo=UTC)
    assert event.decoded("DTEND") == datetime(2026, 12, 2, 21, 45, tzinfo=UTC)
    assert str(event["SUMMARY"]) == "Planned maintenance: prod, API answers 503; back, at 23:45"
    assert str(event["DESCRIPTION"]) == _window().description
    assert str(event["UID"]) == "maintenance-prod-40@payments.example" and str(event["STATUS"]) == "CONFIRMED"
    assert str(calendar["METHOD"]) == "PUBLISH"


def test_a_cancelled_window_is_the_same_event_cancelled_with_a_higher_sequence() -> None:
    text = to_ics(_window(cancelled=True, sequence=2), now=datetime(2026, 12, 1, tzinfo=UTC))
    event = next(iter(icalendar.Calendar.from_ical(text).walk("VEVENT")))
    assert str(event["STATUS"]) == "CANCELLED" and int(event["SEQUENCE"]) == 2


def test_folding_never_splits_a_multibyte_character() -> None:
    line = "DESCRIPTION:" + "ü" * 100
    folded = fold(line)
    assert all(len(part.encode()) <= 75 for part in folded.split("\r\n"))
    assert folded.replace("\r\n ", "") == line
