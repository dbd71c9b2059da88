"""Email notices with a calendar invitation, through a real SMTP relay (aiosmtpd, STARTTLS + AUTH), from maintctl and edge agents.

Messages are read back with the standard library's ``email`` package and the
invitation with ``icalendar``: what a partner's inbox and calendar would hold.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import icalendar
import requests

from agent.partners.delivery import Delivery
from demo.harness.consul import ConsulAgentProcess
from demo.harness.processes import wait_until
from tests.fixtures.maintctl import maintctl, web_fleet
from tests.fixtures.smtp import Mail, SmtpRelay, smtp_relay
from tests.fixtures.webhooks import webhook_receiver
from tests.fixtures.windows import window_fleet

SECRET = "acme-secret-0123456789"


def smtp_table(relay: SmtpRelay, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    password = tmp_path / "smtp.password"
    password.write_text(relay.password + "\n")
    return {"host": "127.0.0.1", "port": relay.port, "username": relay.username, "password_file": str(password),
            "ca_file": str(relay.ca_file), "sender": "Payments operations <ops@payments.example>", "timeout_seconds": 5, **extra}


def notices_table(relay: SmtpRelay, tmp_path: Path, partners: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"partners": partners, "timeout_seconds": 2, "attempts": 3, "backoff_seconds": 0.1, "backoff_max_seconds": 0.3,
            "calendar_domain": "payments.example", "service": "BillPay API", "contact": "NOC +41 44 000 00 00, noc@payments.example",
            "smtp": smtp_table(relay, tmp_path), **extra}


def delivery_log(consul: ConsulAgentProcess, environment: str, event_id: str, partner: str, channel: str) -> Delivery | None:
    r = requests.get(f"{consul.address}/v1/kv/maintenance/{environment}/notices/{event_id}/{partner}/{channel}?raw", timeout=5)
    return Delivery.from_json(r.content) if r.status_code == 200 else None


def finished(consul: ConsulAgentProcess, environment: str, event_id: str, partner: str, channel: str) -> Delivery | None:
    log = delivery_log(consul, environment, event_id, partner, channel)
    return log if log and log.state in ("delivered", "failed") else None


def invitation(mail: Mail) -> tuple[str, Any]:
    """The calendar part's method parameter and its one VEVENT, parsed by icalendar."""
    part = mail.part("text/calendar")
    calendar = icalendar.Calendar.from_ical(part.get_content())
    return part.get_param("method"), calendar


def _file(path: Path, relay: SmtpRelay, tmp_path: Path, events: list[str]) -> Path:
    password = tmp_path / "smtp.password"
    password.write_text(relay.password + "\n")
    path.write_text(f"""[notices]
attempts = 2
backoff_seconds = 0.1
calendar_domain = "payments.example"
service = "BillPay API"
contact = "NOC +41 44 000 00 00"

[notices.smtp]
host = "127.0.0.1"
port = {relay.port}
username = "{relay.username}"
password_file = "{password}"
ca_file = "{relay.ca_file}"
sender = "Payments operations <ops@payments.example>"

[[notices.partners]]
name = "acme"
email = ["Acme NOC <noc@acme.example>", "oncall@acme.example"]
timezone = "Europe/Zurich"
events = {json.dumps(events)}
""")
    return path


def test_maintctl_mails_an_invitation_that_moves_with_the_window_and_is_cancelled_when_withdrawn(
        consul_server: ConsulAgentProcess, environment: str, tmp_path: Path) -> None:
    with smtp_relay(tmp_path) as relay, web_fleet(consul_server, environment, tmp_path / "fleet", count=1):
        # "off" is not among the partner's events: the withdrawal still reaches the calendar it was invited to
        config = _file(tmp_path / "notices.toml", relay, tmp_path, ["announce", "on"])
        on = maintctl(consul_server, environment, "on", "--reason", "SQL-A patch", "--at", "2030-01-02T21:00:00Z", "--for", "45m",
                      "--message", "Back by 22:45 CET", "--notices", str(config))
        assert on.exit_code == 0, on.output
        assert "partner acme (email): delivered after 1 attempt(s)" in on.stdout
        moved = maintctl(consul_server, environment, "on", "--replace", "--reason", "SQL-A patch", "--at", "2030-01-02T21:30:00Z",
                         "--for", "45m", "--notices", str(config))
        assert moved.exit_code == 0, moved.output
        off = maintctl(consul_server, environment, "off", "--reason", "postponed", "--notices", str(config))
        assert off.exit_code == 0, off.output
        shown = maintctl(consul_server, environment, "notices", "--json")
    mails = relay.mails()
    assert len(mails) == 3 and all(m.recipients == ["noc@acme.example", "oncall@acme.example"] for m in mails)
    assert all(login == (relay.username, True) for login in relay.logins)
    first = mails[0].message
    assert first["From"] == "Payments operations <ops@payments.example>" and "noc@acme.example" in first["To"]
    assert first["Subject"] == f"Maintenance scheduled: BillPay API ({environment}), Wed 02 Jan 2030 21:00 UTC - 21:45"
    text = mails[0].part("text/plain").get_content()
    assert "Wed 02 Jan 2030 21:00 UTC - 21:45" in text and "Wed 02 Jan 2030 22:00 CET - 22:45" in text, text
    assert "HTTP 503 Service Unavailable" in text and "Retry-After" in text and '"status":"maintenance"' in text
    assert "NOC +41 44 000 00 00" in text and "Back by 22:45 CET" in text
    methods, events = [], []
    for mail in mails:
        method, calendar = invitation(mail)
        methods.append((method, str(calendar["METHOD"])))
        events.append(next(iter(calendar.walk("VEVENT"))))
    assert methods == [("REQUEST", "REQUEST"), ("REQUEST", "REQUEST"), ("CANCEL", "CANCEL")]
    assert len({str(e["UID"]) for e in events}) == 1 and str(events[0]["UID"]).endswith("@payments.example")
    assert [int(e["SEQUENCE"]) for e in events] == [0, 1, 2], "raised when the window moves and when it is withdrawn"
    assert [e.decoded("DTSTART").isoformat() for e in events[:2]] == ["2030-01-02T21:00:00+00:00", "2030-01-02T21:30:00+00:00"]
    assert events[1].decoded("DTEND").isoformat() == "2030-01-02T22:15:00+00:00"
    assert str(events[2]["STATUS"]) == "CANCELLED"
    assert [str(a) for a in events[0].get("ATTENDEE")] == ["mailto:noc@acme.example", "mailto:oncall@acme.example"]
    assert str(events[0]["ORGANIZER"]) == "mailto:ops@payments.example"
    assert mails[2].message["Subject"].startswith("Maintenance withdrawn: BillPay API")
    rows = json.loads(shown.stdout)["deliveries"]
    assert [(r["event"], r["partner"], r["channel"], r["state"], r["attempts"]) for r in rows][-1] == ("off", "acme", "email", "delivered", 1)


def test_edge_agents_mail_start_and_end_once_beside_the_webhook_and_the_team_chat(consul_server: ConsulAgentProcess, environment: str,
                                                                                 tmp_path: Path) -> None:
    with smtp_relay(tmp_path) as relay, webhook_receiver() as acme_hook, webhook_receiver() as chat:
        partners = [{"name": "acme", "url": acme_hook.url, "secret": SECRET, "email": "noc@acme.example", "timezone": "Asia/Tokyo"}]
        notices = notices_table(relay, tmp_path, partners, chat={"url": chat.url})
        with window_fleet(consul_server, environment, tmp_path / "fleet", notices=notices) as fleet:
            fleet.add("edge-1", ["edge"])
            fleet.add("edge-2", ["edge"])
            fleet.wait_states("active")
            on = consul_server.kv_put(f"maintenance/{environment}/desired",
                                      json.dumps({"mode": "maintenance", "reason": "SQL-B", "ends_at": "2030-01-01T00:00:00Z"}))
            fleet.wait_states("maintenance", intent_index=on)
            for channel in ("webhook", "email"):
                wait_until(lambda c=channel: finished(consul_server, environment, f"{on}-start", "acme", c), 15, what=f"start by {channel}")
            off = consul_server.kv_put(f"maintenance/{environment}/desired", "active")
            fleet.wait_states("active", intent_index=off)
            for channel in ("webhook", "email"):
                wait_until(lambda c=channel: finished(consul_server, environment, f"{off}-end", "acme", c), 15, what=f"end by {channel}")
            wait_until(lambda: finished(consul_server, environment, f"{off}-end", "_team", "chat"), 15, what="end to the team")
            again = consul_server.kv_put(f"maintenance/{environment}/desired",
                                         json.dumps({"mode": "maintenance", "reason": "SQL-C", "ends_at": "2030-01-01T00:00:00Z"}))
            fleet.wait_states("maintenance", intent_index=again)
            wait_until(lambda: finished(consul_server, environment, f"{again}-start", "acme", "email"), 15, what="the next window's start")
            time.sleep(0.5)  # a second sender, if any, would have delivered by now
    mails = relay.mails()
    assert [m.message["X-Maintenance-Event"] for m in mails] == ["start", "end", "start"], "one email per event, two edge boxes"
    assert [r.doc["text"].split(" ", 1)[1][:22] for r in chat.delivered()][:2] == ["maintenance started on", "maintenance ended on *"]
    next_event = next(iter(invitation(mails[2])[1].walk("VEVENT")))
    assert str(next_event["UID"]) == f"maintenance-{environment}-{again}@payments.example" and int(next_event["SEQUENCE"]) == 0, \
        "the next window is a new calendar entry, not the closed one moved"
    start_method, start_cal = invitation(mails[0])
    end_method, end_cal = invitation(mails[1])
    start_event, end_event = next(iter(start_cal.walk("VEVENT"))), next(iter(end_cal.walk("VEVENT")))
    assert (start_method, end_method) == ("REQUEST", "REQUEST") and str(start_event["UID"]) == str(end_event["UID"])
    assert int(end_event["SEQUENCE"]) == int(start_event["SEQUENCE"]) + 1, "the end moves the entry to when it really ended"
    assert end_event.decoded("DTEND") < datetime.fromisoformat("2030-01-01T00:00:00+00:00")
    assert "JST" in mails[0].part("text/plain").get_content()


def test_a_relay_that_is_down_or_refuses_the_login_delays_nothing_and_is_reported(consul_server: ConsulAgentProcess, environment: str,
                                                                                 tmp_path: Path) -> None:
    with smtp_relay(tmp_path, refuse_auth=True) as relay:
        partners = [{"name": "acme", "email": "noc@acme.example"}]
        refusing = notices_table(relay, tmp_path, partners)
        down = notices_table(relay, tmp_path, partners, smtp=smtp_table(relay, tmp_path, port=relay.port + 1 if relay.port < 65535 else 1))
        with window_fleet(consul_server, environment, tmp_path / "fleet") as fleet:
            fleet.add("edge-1", ["edge"], notices=refusing)
            fleet.wait_states("active")
            started = time.monotonic()
            on = consul_server.kv_put(f"maintenance/{environment}/desired", "maintenance")
            fleet.wait_states("maintenance", intent_index=on)
            assert time.monotonic() - started < 10.0, "the window does not wait for the relay's retries"
            refused = wait_until(lambda: finished(consul_server, environment, f"{on}-start", "acme", "email"), 15, what="given up")
            fleet.docs["edge-1"]["notices"] = down
            fleet.restart("edge-1")
            started = time.monotonic()
            off = consul_server.kv_put(f"maintenance/{environment}/desired", "active")
            fleet.wait_states("active", intent_index=off)
            assert time.monotonic() - started < 10.0
            unreachable = wait_until(lambda: finished(consul_server, environment, f"{off}-end", "acme", "email"), 15, what="given up")
            log = fleet.log.name
    assert refused.state == "failed" and len(refused.attempts) == 3  # type: ignore[union-attr]
    assert all(a.status == 535 and "SMTPAuthenticationError" in (a.error or "") for a in refused.attempts)  # type: ignore[union-attr]
    assert relay.logins and not any(ok for _, ok in relay.logins) and relay.mails() == []
    assert unreachable.state == "failed" and all("ConnectionRefused" in (a.error or "") for a in unreachable.attempts)  # type: ignore[union-attr]
    text = Path(log).read_text()
    assert relay.password not in text, "the relay's password is never logged"
    assert "notice failed" in text
