"""The delivery log holds every attempt: an edge agent process stopped by SIGTERM while a slow partner and a slow
relay hold its first attempts, then started again, delivers once and logs exactly what the recipients received."""

from __future__ import annotations

import json
import time
from pathlib import Path

from demo.harness.agents import AgentProcess, agent_doc, wait_for_status
from demo.harness.consul import ConsulAgentProcess
from demo.harness.haproxy import HAProxyUnderTest, edge_section
from demo.harness.processes import wait_until
from tests.fixtures.edge import backend, hap  # noqa: F401 - pytest fixtures
from tests.fixtures.smtp import smtp_relay
from tests.fixtures.webhooks import webhook_receiver
from tests.integration.test_email_notices import SECRET, delivery_log, finished, notices_table


def test_an_attempt_cut_short_by_sigterm_stays_in_the_log_as_unanswered(consul_server: ConsulAgentProcess, environment: str,
                                                                        hap: HAProxyUnderTest, tmp_path: Path) -> None:
    with smtp_relay(tmp_path, hold_first=1) as relay, webhook_receiver(hold_first=1) as acme:
        partners = [{"name": "acme", "url": acme.url, "secret": SECRET, "email": "noc@acme.example"}]
        notices = {**notices_table(relay, tmp_path, partners), "timeout_seconds": 30, "attempts": 4}
        notices["smtp"]["timeout_seconds"] = 30
        doc = agent_doc(consul_server.address, environment, "edge-1", ["edge"], tmp_path / "state",
                        edge=edge_section(hap).model_dump(mode="json", exclude_none=True), notices=notices)
        first = AgentProcess(doc, tmp_path / "run-1").start()
        try:
            on = consul_server.kv_put(f"maintenance/{environment}/desired", json.dumps({"mode": "maintenance", "reason": "SQL-B"}))
            wait_until(lambda: len(acme.received) == 1 and len(relay.mails()) == 1, 30, what="both first attempts held by their recipients")
            # A slow partner and a slow relay delay nothing: the window ends while both still hold the start notice.
            off = consul_server.kv_put(f"maintenance/{environment}/desired", "active")
            assert wait_for_status(consul_server.address, environment, "edge-1", timeout=15, state="active", intent_index=off)
            assert [r.answered for r in acme.received[:1]] == [None], "the start notice is still held"
            stopping = time.monotonic()
            first.stop()
            assert time.monotonic() - stopping < 15, "a held attempt does not hold up the stop"
            for channel in ("webhook", "email"):
                cut = delivery_log(consul_server, environment, f"{on}-start", "acme", channel)
                assert cut and cut.state == "sending" and [a.answered for a in cut.attempts] == [False], (channel, cut)
            second = AgentProcess(doc, tmp_path / "run-2").start()
            try:
                logs = {c: wait_until(lambda c=c: finished(consul_server, environment, f"{on}-start", "acme", c), 30, what=f"{c} resumed")
                        for c in ("webhook", "email")}
            finally:
                second.stop()
        finally:
            first.stop()
    webhook, email = logs["webhook"], logs["email"]
    assert webhook and webhook.state == "delivered" and email and email.state == "delivered"
    start_id = f"{environment}-{on}-start"
    started = [m for m in relay.mails() if m.message["X-Maintenance-Delivery"] == start_id]
    assert len(webhook.attempts) == len(acme.requests_for(start_id)) == 2, "the log lists every request the partner received"
    assert len(email.attempts) == len(started) == 2, "the log lists every message the relay took in"
    for log in (webhook, email):
        assert [a.answered for a in log.attempts] == [False, True] and log.attempts[0].status is None
    assert len({m.message["Message-ID"] for m in started}) == 1, "the resumed message is the same message"
