"""Partner notices from real agents on a real Consul: one per event per partner, signed, despite failures."""

from __future__ import annotations

import json
import time
from pathlib import Path

import icalendar
import requests

from agent.partners.delivery import Delivery
from demo.harness.consul import ConsulAgentProcess
from demo.harness.processes import wait_until
from tests.fixtures.maintctl import maintctl, web_fleet
from tests.fixtures.webhooks import WebhookReceiver, webhook_receiver
from tests.fixtures.windows import window_fleet

ACME = "acme-secret-0123456789"
GLOBEX = "globex-secret-0123456789"


def _notices(partners: list[dict], **extra: object) -> dict:
    return {"partners": partners, "timeout_seconds": 1, "attempts": 4, "backoff_seconds": 0.1, "backoff_max_seconds": 0.3, **extra}


def _log(consul: ConsulAgentProcess, environment: str, event_id: str, partner: str) -> Delivery | None:
    r = requests.get(f"{consul.address}/v1/kv/maintenance/{environment}/notices/{event_id}/{partner}/webhook?raw", timeout=5)
    return Delivery.from_json(r.content) if r.status_code == 200 else None


def _finished(consul: ConsulAgentProcess, environment: str, event_id: str, partner: str) -> Delivery | None:
    log = _log(consul, environment, event_id, partner)
    return log if log and log.state in ("delivered", "failed") else None


def _assert_once(receiver: WebhookReceiver, secret: str, delivery: str) -> dict:
    taken = [r for r in receiver.delivered() if r.delivery == delivery]
    assert len(taken) == 1, f"{delivery}: {len(taken)} delivered"
    for request in receiver.requests_for(delivery):
        assert request.signed_by(secret.encode()), "every attempt carries a valid signature"
    return taken[0].doc


def test_two_edge_boxes_send_one_signed_notice_per_event_per_partner(consul_server: ConsulAgentProcess, environment: str,
                                                                   tmp_path: Path) -> None:
    with webhook_receiver() as acme, webhook_receiver(fail_first=2) as globex:
        notices = _notices([{"name": "acme", "url": acme.url, "secret": ACME},
                            {"name": "globex", "url": globex.url, "secret": GLOBEX, "events": ["start", "end"]}])
        with window_fleet(consul_server, environment, tmp_path, notices=notices) as fleet:
            fleet.add("edge-1", ["edge"])
            fleet.add("edge-2", ["edge"])
            fleet.add("web-1", ["web"])
            fleet.wait_states("active")
            on = consul_server.kv_put(f"maintenance/{environment}/desired",
                                      json.dumps({"mode": "maintenance", "reason": "SQL-A", "ends_at": "2030-01-01T00:00:00Z"}))
            fleet.wait_states("maintenance", intent_index=on)
            for partner in ("acme", "globex"):
                wait_until(lambda partner=partner: _finished(consul_server, environment, f"{on}-start", partner), 15, what=f"start to {partner}")
            fleet.restart("edge-1")  # the end is told by agents that did not see the start
            fleet.restart("edge-2")
            off = consul_server.kv_put(f"maintenance/{environment}/desired", "active")
            fleet.wait_states("active", intent_index=off)
            for partner in ("acme", "globex"):
                wait_until(lambda partner=partner: _finished(consul_server, environment, f"{off}-end", partner), 15, what=f"end to {partner}")
            time.sleep(0.5)  # a second sender, if any, would have delivered by now
        start = _assert_once(acme, ACME, f"{environment}-{on}-start")
        assert start["window"]["ends_at"] == "2030-01-01T00:00:00Z" and start["what_you_will_see"]["api"]["status"] == 503
        assert start["window"]["id"] == f"{environment}-{on}" and start["window"]["intent_index"] == on
        assert start["window"]["starts_at"] is not None
        end = _assert_once(acme, ACME, f"{environment}-{off}-end")
        assert end["window"] == start["window"], "the end notice names the window it ends"
        assert end["reason"] == "SQL-A" and end["intent_index"] == off and end["what_you_will_see"]["api"]["status"] == "normal"
        _assert_once(globex, GLOBEX, f"{environment}-{on}-start")
        _assert_once(globex, GLOBEX, f"{environment}-{off}-end")
        assert len(acme.received) == 2 and len(globex.received) == 6  # globex failed the first two attempts of each
        log = _log(consul_server, environment, f"{on}-start", "globex")
        assert log and log.state == "delivered" and [a.status for a in log.attempts] == [500, 500, 200]
        assert log.claimed_by in ("edge-1", "edge-2") and "HTTP 500" in (log.attempts[0].error or "")


def test_a_partner_that_never_answers_does_not_block_the_fleet(consul_server: ConsulAgentProcess, environment: str,
                                                             tmp_path: Path) -> None:
    with webhook_receiver(hang=True) as dead, webhook_receiver() as alive:
        notices = _notices([{"name": "dead", "url": dead.url, "secret": ACME}, {"name": "alive", "url": alive.url, "secret": GLOBEX}],
                           attempts=3)
        with window_fleet(consul_server, environment, tmp_path, notices=notices) as fleet:
            fleet.add("edge-1", ["edge"])
            fleet.add("web-1", ["web"])
            fleet.wait_states("active")
            started = time.monotonic()
            on = consul_server.kv_put(f"maintenance/{environment}/desired", "maintenance")
            fleet.wait_states("maintenance", intent_index=on)
            entered = time.monotonic() - started
            assert entered < 2.0, f"the fleet took {entered:.1f}s to enter"
            assert _log(consul_server, environment, f"{on}-start", "dead").state == "sending"  # type: ignore[union-attr]
            wait_until(lambda: _finished(consul_server, environment, f"{on}-start", "alive"), 5, what="the live partner served")
            off = consul_server.kv_put(f"maintenance/{environment}/desired", "active")
            fleet.wait_states("active", intent_index=off, timeout=5)
            failed = wait_until(lambda: _finished(consul_server, environment, f"{on}-start", "dead"), 15, what="dead partner given up")
            stopping = time.monotonic()
        assert time.monotonic() - stopping < 5.0, "stopping an agent must not wait for a dead partner"
        assert failed.state == "failed" and len(failed.attempts) == 3  # type: ignore[union-attr]
        assert all("Timeout" in (a.error or "") for a in failed.attempts)  # type: ignore[union-attr]
        assert len(alive.delivered()) == 2


def _notices_file(path: Path, receiver: WebhookReceiver, events: list[str]) -> Path:
    path.write_text(f"""[notices]
timeout_seconds = 1
attempts = 2
backoff_seconds = 0.1
calendar_domain = "payments.example"

[[notices.partners]]
name = "acme"
url = "{receiver.url}"
secret = "{ACME}"
events = {json.dumps(events)}
""")
    return path


def test_maintctl_announce_sends_once_writes_the_ics_and_on_off_notify_when_configured(
        consul_server: ConsulAgentProcess, environment: str, tmp_path: Path) -> None:
    with webhook_receiver() as acme, web_fleet(consul_server, environment, tmp_path / "fleet", count=1):
        config = _notices_file(tmp_path / "notices.toml", acme, ["announce", "on", "off"])
        on = maintctl(consul_server, environment, "on", "--reason", "SQL-A patch", "--at", "2030-01-02T21:00:00Z", "--for", "45m",
                      "--message", "Back by 21:45 UTC", "--notices", str(config))
        assert on.exit_code == 0, on.output
        assert "partner acme (webhook): delivered after 1 attempt(s)" in on.stdout
        ics = tmp_path / "window.ics"
        first = maintctl(consul_server, environment, "announce", "--notices", str(config), "--ics", str(ics))
        assert first.exit_code == 0, first.output
        again = maintctl(consul_server, environment, "announce", "--notices", str(config), "--json")
        assert again.exit_code == 0, again.output
        assert json.loads(again.stdout)["partners"][0]["state"] == "already-claimed"
        forced = maintctl(consul_server, environment, "announce", "--notices", str(config), "--again")
        assert forced.exit_code == 0 and "delivered" in forced.stdout
        off = maintctl(consul_server, environment, "off", "--reason", "postponed", "--notices", str(config))
        assert off.exit_code == 0, off.output
    kinds = [r.doc["type"] for r in acme.delivered()]
    assert kinds == ["maintenance.on", "maintenance.announce", "maintenance.announce", "maintenance.off"]
    assert all(r.signed_by(ACME.encode()) for r in acme.received)
    announced = acme.delivered()[1].doc
    window_index = announced["intent_index"]
    assert announced["window"] == {"id": f"{environment}-{window_index}", "intent_index": window_index,
                                   "starts_at": "2030-01-02T21:00:00Z", "ends_at": "2030-01-02T21:45:00Z"}
    assert all(r.doc["window"] == announced["window"] for r in acme.delivered()), "on, announce and off name the same window"
    assert announced["message"] == "Back by 21:45 UTC" and "HTTP 503" in announced["summary"]
    event = next(iter(icalendar.Calendar.from_ical(ics.read_bytes()).walk("VEVENT")))
    assert event.decoded("DTSTART").isoformat() == "2030-01-02T21:00:00+00:00"
    assert event.decoded("DTEND").isoformat() == "2030-01-02T21:45:00+00:00"
    assert str(event["SUMMARY"]) == f"Planned maintenance: {environment} (API answers HTTP 503 with Retry-After)"
    assert str(event["UID"]).endswith("@payments.example")


def test_maintctl_refuses_a_bad_notices_file_before_writing_anything(consul_server: ConsulAgentProcess, environment: str,
                                                                    tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[notices]\n[[notices.partners]]\nname = "acme"\nurl = "ftp://x"\n')
    with web_fleet(consul_server, environment, tmp_path / "fleet", count=1):
        result = maintctl(consul_server, environment, "on", "--reason", "x", "--notices", str(bad))
        assert result.exit_code == 2 and "notices.partners[acme].url" in result.output, result.output
        assert requests.get(f"{consul_server.address}/v1/kv/maintenance/{environment}/desired", timeout=5).status_code == 404
