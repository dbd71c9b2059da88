"""Partner notices: what a notice says, how it is signed, and how one webhook is delivered.

Partners that integrate directly must be told before a window and when it
really starts and ends. A notice is a JSON document saying what they will see
(HTTP 503 with ``Retry-After`` on the API) and when; it is POSTed to each
partner's webhook, signed with that partner's secret:

    X-Maintenance-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>

(the scheme Stripe and others use: the timestamp is signed with the body so a
captured request cannot be replayed later; docs/partners.md shows how to
verify). A delivery retries with capped, jittered backoff and a timeout per
attempt, stops early on a 4xx that retrying cannot fix, and reports every
attempt so the caller can keep a delivery log. Who sends which notice, once,
is ``agent.partners.dispatch``'s job.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests

from agent.core.model import Intent, Mode
from agent.core.settings import BackoffPolicy

SIGNATURE_HEADER = "X-Maintenance-Signature"
EVENT_HEADER = "X-Maintenance-Event"
DELIVERY_HEADER = "X-Maintenance-Delivery"

_WHAT = {
    "announce": "Planned maintenance",
    "on": "Planned maintenance scheduled",
    "off": "Maintenance window withdrawn or ended",
    "start": "Maintenance started",
    "end": "Maintenance ended",
}


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _human(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if moment else "not announced"


@dataclass(frozen=True)
class Notice:
    """One event of one window, as every partner receives it (the body is the same for all)."""

    event: str
    environment: str
    intent_index: int
    sent_at: datetime
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    reason: str = ""
    message: str = ""
    impact: str = ""

    @property
    def id(self) -> str:
        """The event's identity: environment, intent index and kind (what partners de-duplicate on)."""
        return f"{self.environment}-{self.intent_index}-{self.event}"

    def summary(self) -> str:
        what = _WHAT.get(self.event.split("-", 1)[0], "Maintenance notice")
        if self.event.startswith("end"):
            return f"{what}: {self.environment} answers normally again since {_human(self.sent_at)}."
        if self.event.startswith("off"):
            return f"{what}: {self.environment} is leaving maintenance now ({_human(self.sent_at)})."
        starts = self.sent_at if self.event.startswith("start") else (self.starts_at or self.sent_at)
        return f"{what}: {self.environment} from {_human(starts)} until {_human(self.ends_at)}. {self.impact}".strip()

    def to_dict(self) -> dict[str, Any]:
        in_window = not self.event.startswith(("end", "off"))
        return {
            "id": self.id,
            "type": f"maintenance.{self.event.split('-', 1)[0]}",
            "event": self.event,
            "environment": self.environment,
            "intent_index": self.intent_index,
            "sent_at": _iso(self.sent_at),
            "window": {"starts_at": _iso(self.starts_at), "ends_at": _iso(self.ends_at)},
            "reason": self.reason,
            "message": self.message,
            "what_you_will_see": ({"api": {"status": 503, "retry_after": "seconds until the announced end", "text": self.impact}}
                                  if in_window else {"api": {"status": "normal"}}),
            "summary": self.summary(),
        }

    def body(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()


def notice_for(event: str, environment: str, intent: Intent, now: datetime, impact: str,
               window: Intent | None = None) -> Notice:
    """The notice of ``event`` for ``intent``; ``window`` supplies the times when ``intent`` is the closing one."""
    source = window if window is not None and window.mode is Mode.MAINTENANCE else intent
    return Notice(event=event, environment=environment, intent_index=intent.index, sent_at=now,
                  starts_at=source.starts_at or (now if source.mode is Mode.MAINTENANCE and event != "end" else None),
                  ends_at=source.ends_at, reason=source.reason, message=source.message, impact=impact)


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: bytes, header: str, body: bytes, now: float, tolerance: float = 300.0) -> bool:
    """What a partner does: recompute the HMAC, compare in constant time, refuse stale timestamps."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


@dataclass
class Attempt:
    at: str
    status: int | None
    error: str | None
    seconds: float


@dataclass
class Delivery:
    """The delivery log of one notice to one partner (kept in Consul by the dispatcher)."""

    notice_id: str
    event: str
    partner: str
    url: str
    claimed_by: str
    claimed_at: str
    state: str = "sending"  # sending → delivered | failed
    attempts: list[Attempt] = field(default_factory=list)
    body: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, raw: bytes | str) -> Delivery:
        doc = json.loads(raw)
        doc["attempts"] = [Attempt(**a) for a in doc.get("attempts", [])]
        return cls(**doc)


class WebhookSender:
    """POSTs one signed body to one URL until a 2xx, a hopeless 4xx, the attempts run out, or ``stop`` is set."""

    def __init__(self, timeout: float, attempts: int, backoff: float, backoff_max: float,
                 stop: threading.Event | None = None, clock: Callable[[], float] = time.time):
        self.timeout = timeout
        self.attempts = attempts
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.stop = stop or threading.Event()
        self.clock = clock

    def deliver(self, delivery: Delivery, secret: bytes, record: Callable[[Delivery], None]) -> Delivery:
        body = delivery.body.encode()
        backoff = BackoffPolicy(base=self.backoff, cap=self.backoff_max).start()
        with requests.Session() as session:
            while len(delivery.attempts) < self.attempts and not self.stop.is_set():
                started = time.monotonic()
                timestamp = int(self.clock())
                headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(secret, body, timestamp),
                           EVENT_HEADER: delivery.event, DELIVERY_HEADER: delivery.notice_id,
                           "User-Agent": "maintenance-agent-notices/1"}
                status: int | None = None
                try:
                    response = session.post(delivery.url, data=body, headers=headers, timeout=self.timeout, allow_redirects=False)
                    status = response.status_code
                    error = None if 200 <= status < 300 else f"HTTP {status}: {response.text[:200]}"
                except requests.RequestException as exc:
                    error = f"{type(exc).__name__}: {str(exc)[:200]}"
                at = datetime.fromtimestamp(timestamp, UTC).isoformat()
                delivery.attempts.append(Attempt(at=at, status=status, error=error, seconds=round(time.monotonic() - started, 3)))
                if error is None:
                    delivery.state = "delivered"
                    break
                hopeless = status is not None and 400 <= status < 500 and status not in (408, 425, 429)
                if hopeless or len(delivery.attempts) >= self.attempts:
                    delivery.state = "failed"
                    break
                record(delivery)
                self.stop.wait(backoff.next())
        # Interrupted by shutdown, the state stays "sending": the next start of this agent resumes it.
        record(delivery)
        return delivery
