"""Notices: body, signature, delivery with retries, and exactly-one claims (fake Consul, loopback receiver)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog

from agent.config.partners import NoticesSection, PartnerSection
from agent.core.model import Intent, Mode, State
from agent.partners.delivery import Delivery
from agent.partners.dispatch import NoticeDispatcher
from agent.partners.notices import notice_for, sign, verify
from agent.partners.webhook import WebhookSender
from tests.fakes import FakeGateway
from tests.fixtures.webhooks import webhook_receiver

SECRET = b"s3cret-for-partner-acme"
START = datetime(2026, 12, 2, 21, 0, tzinfo=UTC)
WINDOW = Intent(Mode.MAINTENANCE, 40, reason="SQL-A patch", message="Back at 22:00 UTC", starts_at=START,
                ends_at=START + timedelta(minutes=45))


def test_signature_verifies_and_refuses_tampering_other_secrets_and_stale_timestamps() -> None:
    body = b'{"a":1}'
    header = sign(SECRET, body, 1_700_000_000)
    assert header.startswith("t=1700000000,v1=") and len(header.split("v1=")[1]) == 64
    assert verify(SECRET, header, body, now=1_700_000_010)
    assert not verify(SECRET, header, b'{"a":2}', now=1_700_000_010)
    assert not verify(b"another-secret-entirely", header, body, now=1_700_000_010)
    assert not verify(SECRET, header, body, now=1_700_000_000 + 301)
    assert not verify(SECRET, "garbage", body, now=1_700_000_000)


def test_notice_says_what_partners_will_see_and_when() -> None:
    notice = notice_for("announce", "prod", WINDOW, START - timedelta(days=2), "API: HTTP 503 with Retry-After")
    doc = json.loads(notice.body())
    assert doc["id"] == "prod-40-announce" and doc["type"] == "maintenance.announce"
    assert doc["window"] == {"id": "prod-40", "intent_index": 40, "starts_at": "2026-12-02T21:00:00Z", "ends_at": "2026-12-02T21:45:00Z"}
    assert doc["what_you_will_see"]["api"]["status"] == 503
    assert "2026-12-02 21:00 UTC until 2026-12-02 21:45 UTC" in doc["summary"] and "Retry-After" in doc["summary"]
    closing = notice_for("end", "prod", Intent(Mode.ACTIVE, 41), START + timedelta(minutes=40), "x", window=WINDOW)
    end = json.loads(closing.body())
    assert end["id"] == "prod-41-end" and end["what_you_will_see"] == {"api": {"status": "normal"}}
    assert end["window"] == doc["window"] and end["reason"] == "SQL-A patch", "the end names the window it ends"
    withdrawn = json.loads(notice_for("off", "prod", Intent(Mode.ACTIVE, 42), START, "x").body())
    assert withdrawn["window"] == {"id": None, "intent_index": None, "starts_at": None, "ends_at": None}
    assert "answers normally again since 2026-12-02 21:40 UTC" in end["summary"]


def _delivery(url: str) -> Delivery:
    return Delivery(notice_id="prod-40-start", event="start", partner="acme", url=url, claimed_by="edge-1",
                    claimed_at=START.isoformat(), body='{"id":"prod-40-start"}')


def test_sender_retries_with_backoff_until_the_receiver_takes_it() -> None:
    with webhook_receiver(fail_first=2) as receiver:
        logged: list[int] = []
        result = WebhookSender(timeout=2, attempts=5, backoff=0.05, backoff_max=0.2).deliver(
            _delivery(receiver.url), SECRET, lambda d: logged.append(len(d.attempts)) is None)
    assert result.state == "delivered"
    assert [a.status for a in result.attempts] == [500, 500, 200]
    assert "HTTP 500" in (result.attempts[0].error or "")
    assert logged[-1] == 3
    assert len(receiver.received) == 3 and all(r.signed_by(SECRET) for r in receiver.received)
    assert {r.delivery for r in receiver.received} == {"prod-40-start"} and receiver.received[0].event == "start"


def test_sender_gives_up_on_a_hopeless_4xx_and_after_the_attempts() -> None:
    with webhook_receiver(fail_first=99, status_when_failing=401) as receiver:
        result = WebhookSender(timeout=2, attempts=5, backoff=0.01, backoff_max=0.01).deliver(_delivery(receiver.url), SECRET, lambda d: True)
    assert result.state == "failed" and [a.status for a in result.attempts] == [401]
    with webhook_receiver(fail_first=99) as receiver:
        result = WebhookSender(timeout=2, attempts=3, backoff=0.01, backoff_max=0.01).deliver(_delivery(receiver.url), SECRET, lambda d: True)
    assert result.state == "failed" and len(result.attempts) == 3


def test_a_receiver_that_never_answers_costs_one_timeout_per_attempt() -> None:
    with webhook_receiver(hang=True) as receiver:
        started = time.monotonic()
        result = WebhookSender(timeout=0.3, attempts=2, backoff=0.01, backoff_max=0.01).deliver(_delivery(receiver.url), SECRET, lambda d: True)
        elapsed = time.monotonic() - started
    assert result.state == "failed" and all("Timeout" in (a.error or "") for a in result.attempts)
    assert elapsed < 2.0


def _section(url: str, **extra: object) -> NoticesSection:
    return NoticesSection(partners=[PartnerSection(name="acme", url=url, secret=SECRET.decode())],
                          timeout_seconds=2, attempts=3, backoff_seconds=0.01, **extra)


def test_two_senders_deliver_each_event_once_per_partner() -> None:
    gateway = FakeGateway()
    with webhook_receiver() as receiver:
        boxes = [NoticeDispatcher(gateway, "maintenance/prod", "prod", f"edge-{i}", _section(receiver.url), structlog.get_logger())
                 for i in (1, 2)]
        try:
            futures = [s.result for box in boxes for s in box.send(box.notice("start", WINDOW))]
            results = [f.result(timeout=10) for f in futures]
        finally:
            for box in boxes:
                box.stop()
    assert len([r for r in results if r is not None]) == 1
    assert len(receiver.delivered()) == 1
    log = Delivery.from_json(gateway.kv["maintenance/prod/notices/40-start/acme/webhook"][0])
    assert log.state == "delivered" and log.claimed_by in ("edge-1", "edge-2") and len(log.attempts) == 1


def test_only_the_agent_events_follow_transitions_and_the_wanted_kinds_are_sent(tmp_path: Path) -> None:
    gateway = FakeGateway()
    with webhook_receiver() as receiver:
        section = NoticesSection(partners=[
            PartnerSection(name="acme", url=receiver.url, secret=SECRET.decode(), events=["start"]),
            PartnerSection(name="globex", url=receiver.url, secret=SECRET.decode(), events=["announce", "end"]),
        ], timeout_seconds=2, attempts=1)
        box = NoticeDispatcher(gateway, "maintenance/prod", "prod", "edge-1", section, structlog.get_logger())
        try:
            box.on_transition(State.ACTIVE, State.ENTERING, WINDOW)
            box.on_transition(State.ENTERING, State.MAINTENANCE, WINDOW)
            box.on_transition(State.MAINTENANCE, State.EXITING, Intent(Mode.ACTIVE, 41))
            box.on_transition(State.EXITING, State.ACTIVE, Intent(Mode.ACTIVE, 41))
            box.on_transition(State.EXITING, State.ACTIVE, Intent(Mode.ACTIVE, 0))
            deadline = time.monotonic() + 5
            while len(receiver.delivered()) < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            box.stop()
    assert sorted(gateway.kv) == ["maintenance/prod/notices/40-start/acme/webhook", "maintenance/prod/notices/41-end/globex/webhook",
                                  "maintenance/prod/window"]
    assert sorted(r.event for r in receiver.delivered()) == ["end", "start"]
    end = next(r.doc for r in receiver.delivered() if r.event == "end")
    assert end["window"] == {"id": "prod-40", "intent_index": 40, "starts_at": "2026-12-02T21:00:00Z", "ends_at": "2026-12-02T21:45:00Z"}


def test_an_interrupted_delivery_is_resumed_by_its_claimant() -> None:
    gateway = FakeGateway()
    with webhook_receiver() as receiver:
        pending = _delivery(receiver.url)
        gateway.put_key("maintenance/prod/notices/40-start/acme/webhook", pending.to_json(), cas=0)
        someone_elses = Delivery(**{**pending.__dict__, "claimed_by": "edge-2", "notice_id": "prod-39-start"})
        gateway.put_key("maintenance/prod/notices/39-start/acme/webhook", someone_elses.to_json(), cas=0)
        box = NoticeDispatcher(gateway, "maintenance/prod", "prod", "edge-1", _section(receiver.url), structlog.get_logger())
        try:
            results = [f.result(timeout=10) for f in box.resume()]
        finally:
            box.stop()
    assert [r.notice_id for r in results if r] == ["prod-40-start"]
    assert [r.delivery for r in receiver.delivered()] == ["prod-40-start"]


def test_partner_config_needs_exactly_one_secret(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs exactly one of secret or secret_file"):
        PartnerSection(name="acme", url="https://hooks.example/m")
    with pytest.raises(ValueError, match="does not exist"):
        PartnerSection(name="acme", url="https://hooks.example/m", secret_file=tmp_path / "missing")
    (tmp_path / "acme.secret").write_text(SECRET.decode() + "\n")
    assert PartnerSection(name="acme", url="https://hooks.example/m", secret_file=tmp_path / "acme.secret").resolved_secret() == SECRET
