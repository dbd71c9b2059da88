"""Partner notices from real agents on a real Consul: one per event per partner, signed, despite failures."""

from __future__ import annotations

import json
import time
from pathlib import Path

import requests

from agent.notices import Delivery
from tests.fixtures.consul import ConsulAgentProcess
from tests.fixtures.processes import wait_until
from tests.fixtures.webhooks import WebhookReceiver, webhook_receiver
from tests.fixtures.windows import window_fleet

ACME = "acme-secret-0123456789"
GLOBEX = "globex-secret-0123456789"


def _notices(partners: list[dict], **extra: object) -> dict:
    return {"partners": partners, "timeout_seconds": 1, "attempts": 4, "backoff_seconds": 0.1, "backoff_max_seconds": 0.3, **extra}


def _log(consul: ConsulAgentProcess, environment: str, event_id: str, partner: str) -> Delivery | None:
    r = requests.get(f"{consul.address}/v1/kv/maintenance/{environment}/notices/{event_id}/{partner}?raw", timeout=5)
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
                wait_until(lambda: _finished(consul_server, environment, f"{on}-start", partner), 15, what=f"start to {partner}")
            off = consul_server.kv_put(f"maintenance/{environment}/desired", "active")
            fleet.wait_states("active", intent_index=off)
            for partner in ("acme", "globex"):
                wait_until(lambda: _finished(consul_server, environment, f"{off}-end", partner), 15, what=f"end to {partner}")
            time.sleep(0.5)  # a second sender, if any, would have delivered by now
        start = _assert_once(acme, ACME, f"{environment}-{on}-start")
        assert start["window"]["ends_at"] == "2030-01-01T00:00:00Z" and start["what_you_will_see"]["api"]["status"] == 503
        _assert_once(acme, ACME, f"{environment}-{off}-end")
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
