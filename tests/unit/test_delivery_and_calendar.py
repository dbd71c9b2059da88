"""The attempt loop's audit (recorded before sent), the calendar entry's UID and SEQUENCE, and the partner config's errors."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.config.schema import from_mapping
from agent.core.errors import ConfigError
from agent.core.model import Intent, Mode
from agent.core.selectors import SelectorError, matches_all, parse_selector, render
from agent.partners.calendar_state import CalendarLedger, next_record
from agent.partners.delivery import AttemptLoop, Delivery, Outcome, RetryPolicy
from agent.partners.notices import Notice, notice_for
from tests.fakes import FakeGateway

T0 = datetime(2026, 12, 2, 21, 0, tzinfo=UTC)


def _delivery() -> Delivery:
    return Delivery(notice_id="prod-40-start", event="start", partner="acme", url="mailto:noc@acme.example", claimed_by="edge-1",
                    claimed_at=T0.isoformat(), channel="email")


def test_an_attempt_is_in_the_log_before_it_is_sent_and_completed_after() -> None:
    seen_at_send: list[list[bool]] = []
    logged: list[list[bool]] = []
    delivery = _delivery()

    def send_once() -> Outcome:
        seen_at_send.append([a.answered for a in delivery.attempts])
        return Outcome(status=451, error="SMTP 451 try later") if len(seen_at_send) == 1 else Outcome(status=250)

    result = AttemptLoop(RetryPolicy(3, 0, 0)).run(delivery, send_once, lambda d: logged.append([a.answered for a in d.attempts]) is None)
    assert seen_at_send == [[False], [True, False]], "each attempt is logged as unanswered before it goes out"
    assert result.state == "delivered" and [a.status for a in result.attempts] == [451, 250]
    assert logged[0] == [False] and logged[-1] == [True, True]


def test_an_attempt_the_log_cannot_hold_is_not_made() -> None:
    sent: list[int] = []
    writes = iter([False, False, True, True, True])
    result = AttemptLoop(RetryPolicy(3, 0, 0)).run(_delivery(), lambda: sent.append(1) or Outcome(status=250), lambda d: next(writes))
    assert sent == [1] and len(result.attempts) == 1 and result.state == "delivered"


def test_a_hopeless_answer_stops_and_a_stop_leaves_the_delivery_sending() -> None:
    result = AttemptLoop(RetryPolicy(5, 0, 0)).run(_delivery(), lambda: Outcome(status=550, error="refused", hopeless=True), lambda d: True)
    assert result.state == "failed" and len(result.attempts) == 1
    loop = AttemptLoop(RetryPolicy(5, 0, 0))
    loop.stop.set()
    assert loop.run(_delivery(), lambda: Outcome(status=250), lambda d: True).state == "sending"


def _notice(event: str, index: int, now: datetime, starts: datetime | None = T0, ends: datetime | None = T0 + timedelta(minutes=45),
            window: Intent | None = None, replaces: int | None = None) -> Notice:
    intent = Intent(Mode.MAINTENANCE if event in ("announce", "on", "start") else Mode.ACTIVE, index, starts_at=starts, ends_at=ends)
    return notice_for(event, "prod", intent, now, "503", window, replaces)


def test_one_uid_per_window_and_a_sequence_raised_when_it_moves() -> None:
    window = Intent(Mode.MAINTENANCE, 40, starts_at=T0, ends_at=T0 + timedelta(minutes=45))
    announced = next_record(None, _notice("announce", 40, T0 - timedelta(days=2)))
    same = next_record(announced, _notice("on", 40, T0 - timedelta(days=1)))
    moved = next_record(same, _notice("on", 52, T0 - timedelta(hours=2), starts=T0 + timedelta(minutes=30),
                                      ends=T0 + timedelta(minutes=75), replaces=40))
    started = next_record(moved, _notice("start", 52, T0 + timedelta(minutes=30), starts=T0 + timedelta(minutes=30),
                                         ends=T0 + timedelta(minutes=75)))
    ended = next_record(started, _notice("end", 60, T0 + timedelta(minutes=50), window=replace(window, index=52)))
    assert [r.entry.uid_index for r in (announced, same, moved, started, ended)] == [40] * 5
    assert [r.entry.sequence for r in (announced, same, moved, started, ended)] == [0, 0, 1, 1, 2]
    assert ended.closed and ended.entry.ends_at == (T0 + timedelta(minutes=50)).isoformat()
    after = next_record(ended, _notice("announce", 70, T0 + timedelta(days=7), starts=T0 + timedelta(days=8)))
    assert (after.entry.uid_index, after.entry.sequence) == (70, 0), "the next window is a new calendar entry"
    withdrawn = next_record(announced, _notice("off", 45, T0 - timedelta(hours=1), window=window))
    assert withdrawn.entry.cancelled and withdrawn.entry.sequence == 1 and withdrawn.closed
    ending = next_record(started, _notice("off", 58, T0 + timedelta(minutes=40), window=replace(window, index=52)))
    assert ending == started, "an off once the window began moves nothing: the end follows"
    unrelated = next_record(announced, _notice("on", 90, T0))
    assert unrelated.entry.uid_index == 90, "a window that replaces nothing is a new entry, also while another is open"


def test_a_closed_window_stays_as_closed_and_the_next_one_is_a_new_entry() -> None:
    """An off after the end, the window after it, a window withdrawn unnoticed, an end told under the replaced index."""
    window = Intent(Mode.MAINTENANCE, 85, starts_at=T0, ends_at=T0 + timedelta(minutes=20))
    started = next_record(next_record(None, _notice("on", 85, T0, ends=T0 + timedelta(minutes=20))),
                          _notice("start", 85, T0, ends=T0 + timedelta(minutes=20)))
    ended = next_record(started, _notice("end", 90, T0 + timedelta(minutes=5), window=window))
    assert next_record(ended, _notice("off", 91, T0 + timedelta(minutes=5, seconds=2), window=window)) == ended
    after = next_record(ended, _notice("on", 120, T0 + timedelta(hours=2), starts=T0 + timedelta(hours=3)))
    assert (after.entry.uid_index, after.entry.sequence, after.closed) == (120, 0, False)
    replaced = next_record(after, _notice("on", 130, T0 + timedelta(hours=2), starts=T0 + timedelta(hours=4), replaces=120))
    assert (replaced.entry.uid_index, replaced.entry.sequence) == (120, 1)
    # the edge entered under 120 and tells the end of that index: the same, replaced window
    done = next_record(replaced, _notice("end", 140, T0 + timedelta(hours=4, minutes=10), window=replace(window, index=120)))
    assert (done.entry.uid_index, done.entry.sequence, done.closed) == (120, 2, True)


def test_a_late_notice_of_an_older_window_moves_nothing() -> None:
    gateway = FakeGateway()
    ledger = CalendarLedger(gateway, "maintenance/prod/calendar")
    ledger.entry_for(_notice("on", 200, T0))
    before = gateway.get_key("maintenance/prod/calendar").value
    old = ledger.entry_for(_notice("end", 210, T0, window=Intent(Mode.MAINTENANCE, 150, starts_at=T0 - timedelta(hours=5))))
    assert old.uid_index == 150 and gateway.get_key("maintenance/prod/calendar").value == before


def test_every_sender_of_one_notice_mails_the_same_sequence() -> None:
    gateway = FakeGateway()
    ledger = CalendarLedger(gateway, "maintenance/prod/calendar")
    ledger.entry_for(_notice("announce", 40, T0 - timedelta(days=1)))
    window = Intent(Mode.MAINTENANCE, 40, starts_at=T0, ends_at=T0 + timedelta(minutes=45))
    first = ledger.entry_for(_notice("end", 60, T0 + timedelta(minutes=40), window=window))
    second = ledger.entry_for(_notice("end", 60, T0 + timedelta(minutes=40, seconds=1), window=window))
    assert first == second and first.sequence == 1


def test_selectors_parse_match_and_refuse_what_is_not_a_selector() -> None:
    matchers = parse_selector('{severity="critical", env=~"prod|mock", team!="db"}')
    assert render(matchers) == '{severity="critical",env=~"prod|mock",team!="db"}'
    assert matches_all(matchers, {"severity": "critical", "env": "prod"})
    assert not matches_all(matchers, {"severity": "critical", "env": "production"}), "a regex matches the whole value"
    assert not matches_all(matchers, {"severity": "critical", "env": "mock", "team": "db"})
    for bad in ("", "severity=critical", 'severity~"x"', 'env=~"("'):
        with pytest.raises(SelectorError):
            parse_selector(bad)


def test_check_config_names_the_partner_and_the_key(tmp_path: Path) -> None:
    doc = {"agent": {"roles": ["edge"], "environment": "prod", "node": "edge-1"},
           "edge": {"verify_maintenance": [{"name": "u", "url": "http://127.0.0.1/"}], "verify_active": [{"name": "u", "url": "http://127.0.0.1/"}]},
           "notices": {"contact": "NOC", "partners": [{"name": "acme", "email": ["noc@acme"], "timezone": "Europe/Zurch"},
                                                      {"name": "globex"}, {"name": "initech", "email": "ops@initech.example", "colour": 1}]},
           "alert_gate": {"url": "http://127.0.0.1:9090", "selector": "severity=critical"}}
    with pytest.raises(ConfigError) as raised:
        from_mapping(doc)
    problems = "\n".join(raised.value.problems)
    assert "notices.partners[acme].email.0: 'noc@acme' is not an email address like noc@acme.example" in problems, problems
    assert "notices.partners[acme].timezone: 'Europe/Zurch' is not a time zone name" in problems
    assert "notices.partners[globex]: set url (a signed webhook) and/or email" in problems
    assert "notices.partners[initech].colour: unknown key" in problems
    assert "alert_gate.selector: expected label matchers" in problems
    doc["notices"]["partners"] = [{"name": "initech", "email": "ops@initech.example"}]
    doc.pop("alert_gate")
    with pytest.raises(ConfigError, match=r"partners with email \(initech\) need a \[notices.smtp\] table"):
        from_mapping(doc)
