"""Email notices: a plain-text message a person reads in five seconds, with the window as a calendar invitation.

Partners' operations teams read a shared inbox and a calendar, not webhooks.
One message per event: the subject says what happens to which environment and
when; the body says when in UTC and in the partner's own time zone, what
their API clients will see (503, ``Retry-After``, the JSON body) and whom to
call; the invitation (``text/calendar; method=REQUEST``, or ``CANCEL`` for a
withdrawn window) keeps the entry in their calendar where the window is.

The message is built once, when the delivery is claimed, and kept in the
delivery log, so a retry or a resumed delivery sends the very same message
(same ``Message-ID``). It goes through the team's SMTP relay with STARTTLS and
AUTH; the password is read from its file for each attempt and never logged.
"""

from __future__ import annotations

import json
import smtplib
import ssl
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from agent.config.methods import mailbox
from agent.partners.delivery import AttemptLoop, Delivery, Outcome, RetryPolicy, short
from agent.partners.ical import CalendarWindow, to_ics
from agent.partners.notices import DELIVERY_HEADER, EVENT_HEADER, Notice

if TYPE_CHECKING:
    from agent.config.partners import NoticesSection, PartnerSection, SmtpSection
    from agent.partners.calendar_state import CalendarEntry

_HEADLINE = {
    "announce": "Planned maintenance",
    "on": "Maintenance scheduled",
    "start": "Maintenance started",
    "end": "Maintenance ended",
    "off": "Maintenance ending",
}


def _when(moment: datetime, zone: str) -> str:
    local = moment.astimezone(ZoneInfo(zone))
    return f"{local:%a %d %b %Y %H:%M} {local.tzname()}"


def _span(starts: datetime, ends: datetime, zone: str) -> str:
    local_end = ends.astimezone(ZoneInfo(zone))
    same_day = starts.astimezone(ZoneInfo(zone)).date() == local_end.date()
    return f"{_when(starts, zone)} - {local_end:%H:%M}" if same_day else f"{_when(starts, zone)} - {_when(ends, zone)}"


def headline(notice: Notice) -> str:
    return "Maintenance withdrawn" if notice.withdrawn else _HEADLINE.get(notice.kind, "Maintenance notice")


def subject(notice: Notice, section: NoticesSection, entry: CalendarEntry) -> str:
    starts, ends = datetime.fromisoformat(entry.starts_at), datetime.fromisoformat(entry.ends_at)
    what = f"{headline(notice)}: {section.service} ({notice.environment})"
    if notice.kind == "end":
        return f"{what}, back to normal since {notice.sent_at.astimezone(UTC):%H:%M} UTC"
    return f"{what}, {_span(starts, ends, 'UTC')}"


def body_text(notice: Notice, partner: PartnerSection, section: NoticesSection, entry: CalendarEntry) -> str:
    """The five-second read: what, when (UTC and the partner's zone), what API clients see, whom to call."""
    starts, ends = datetime.fromisoformat(entry.starts_at), datetime.fromisoformat(entry.ends_at)
    lines = [f"{headline(notice)}: {section.service}, environment {notice.environment}.", ""]
    when = [f"When:      {_span(starts, ends, 'UTC')}"]
    if partner.timezone != "UTC":
        when.append(f"           {_span(starts, ends, partner.timezone)}")
    if notice.ends_at is None:
        when.append("           (no end announced: up to 60 minutes)")
    lines += when
    if notice.kind == "end":
        lines += [f"Ended:     {_when(notice.sent_at, 'UTC')}" + (f" / {_when(notice.sent_at, partner.timezone)}"
                                                                     if partner.timezone != "UTC" else ""),
                  "", "Your API clients get normal answers again."]
    elif notice.withdrawn:
        lines += ["", "This window is withdrawn: nothing changes for your API clients. It is removed from your calendar."]
    elif notice.kind == "off":
        lines += ["", "The window is ending now; a last message follows when the API answers normally again."]
    else:
        retry = max(0, int((ends - max(starts, notice.sent_at)).total_seconds()))
        example = ('{"status":"maintenance","reason":' + _json(notice.reason or "planned maintenance") + ',"message":'
                   + _json(notice.message) + f',"ends_at":"{ends.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}","retry_after":{retry}}}')
        lines += ["", "During the window your API clients get:",
                  "  HTTP 503 Service Unavailable",
                  "  Retry-After: <seconds until the announced end>",
                  f"  {example}",
                  "Retry after that many seconds, not in a tight loop."]
    if notice.reason:
        lines.append(f"Reason:    {notice.reason}")
    if notice.message:
        lines.append(f"Message:   {notice.message}")
    lines += ["", f"Questions during the window: {section.contact}", "",
              f"Reference: window {notice.window_id or notice.environment}, notice {notice.id}."]
    return "\n".join(lines) + "\n"


def _json(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def compose(notice: Notice, partner: PartnerSection, section: NoticesSection, entry: CalendarEntry) -> str:
    """The whole message (RFC 5322, CRLF line ends) for ``partner``: text first, the invitation as its alternative."""
    smtp = section.smtp
    assert smtp is not None
    # Headers unfolded up to SMTP's own limit: Python folds a long subject right after "Subject:", which some clients show
    # with a leading blank.
    message = EmailMessage(policy=SMTP.clone(max_line_length=998))
    message["Subject"] = subject(notice, section, entry)
    message["From"] = smtp.sender
    message["To"] = ", ".join(partner.email)
    if smtp.reply_to:
        message["Reply-To"] = smtp.reply_to
    message["Date"] = format_datetime(notice.sent_at.astimezone(UTC))
    message["Message-ID"] = f"<{notice.id}.{partner.name}@{section.calendar_domain}>"
    message["Auto-Submitted"] = "auto-generated"
    message[EVENT_HEADER] = notice.event
    message[DELIVERY_HEADER] = notice.id
    message.set_content(body_text(notice, partner, section, entry))
    window = CalendarWindow(
        uid=f"maintenance-{notice.environment}-{entry.uid_index}@{section.calendar_domain}",
        starts_at=datetime.fromisoformat(entry.starts_at), ends_at=datetime.fromisoformat(entry.ends_at),
        summary=f"Planned maintenance: {section.service} ({notice.environment}), API answers HTTP 503 with Retry-After",
        description=body_text(notice, partner, section, entry), sequence=entry.sequence, cancelled=entry.cancelled,
        organizer=mailbox(smtp.sender), organizer_name=smtp.sender.split("<", 1)[0].strip().strip('"'),
        attendees=tuple(mailbox(a) for a in partner.email))
    method = window.method
    message.add_alternative(to_ics(window, notice.sent_at), subtype="calendar", params={"method": method})
    return message.as_string()


class SmtpSender:
    """Sends one stored message through the relay until it is accepted, refused for good, the attempts run out, or stop."""

    def __init__(self, smtp: SmtpSection, attempts: int, backoff: float, backoff_max: float,
                 stop: threading.Event | None = None, clock: Callable[[], float] = time.time):
        self.smtp = smtp
        self.loop = AttemptLoop(RetryPolicy(attempts, backoff, backoff_max), stop, clock)

    def deliver(self, delivery: Delivery, recipients: list[str], record: Callable[[Delivery], bool]) -> Delivery:
        data = delivery.body.encode()
        return self.loop.run(delivery, lambda: self.send_once(data, recipients), record)

    def send_once(self, data: bytes, recipients: list[str]) -> Outcome:
        """One SMTP transaction; a refusal of every recipient with a 5xx is hopeless, anything else is retried."""
        smtp = self.smtp
        session: smtplib.SMTP | None = None
        try:
            session = smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_seconds)
            session.ehlo()
            if smtp.starttls:
                session.starttls(context=ssl.create_default_context(cafile=str(smtp.ca_file) if smtp.ca_file else None))
                session.ehlo()
            if smtp.username is not None:
                session.login(smtp.username, smtp.password())
            session.sendmail(mailbox(smtp.sender), recipients, data)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            refused = ", ".join(f"{addr} ({code} {reply.decode(errors='replace')[:80]})" for addr, (code, reply) in exc.recipients.items())
            return Outcome(status=codes[0] if codes else None, error=f"SMTP recipients refused: {refused}",
                           hopeless=all(500 <= c < 600 for c in codes))
        except smtplib.SMTPResponseException as exc:
            reply = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
            return Outcome(status=exc.smtp_code, error=f"SMTP {exc.smtp_code} ({type(exc).__name__}): {' '.join(reply.split())[:200]}")
        except (smtplib.SMTPException, OSError, ValueError) as exc:
            return Outcome(error=f"SMTP relay {smtp.host}:{smtp.port}: {short(exc)}")
        finally:
            if session is not None:
                _close(session)
        return Outcome(status=250)


def _close(session: smtplib.SMTP) -> None:
    """QUIT, or just close: the message was accepted (or not) before; how the session ends changes nothing."""
    try:
        session.quit()
    except (smtplib.SMTPException, OSError):
        session.close()
