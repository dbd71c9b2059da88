"""Partner notices: what a notice says and how a webhook's body is signed.

Partners that integrate directly must be told before a window and when it
really starts and ends. A notice is a JSON document saying what they will see
(HTTP 503 with ``Retry-After`` on the API) and when; it is POSTed to each
partner's webhook, signed with that partner's secret:

    X-Maintenance-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>

(the scheme Stripe and others use: the timestamp is signed with the body so a
captured request cannot be replayed later; docs/partners.md shows how to
verify). How one webhook is posted is ``agent.partners.webhook``; email
(with a calendar invitation) ``agent.partners.mail``; retries and the
delivery log ``agent.partners.delivery``; who sends which notice, once,
``agent.partners.dispatch``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agent.core.model import Intent, Mode

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
    #: The intent index of the maintenance window this notice is about (None: not known, e.g. an
    #: ``off`` that withdrew nothing). Every notice of one window carries the same value.
    window_index: int | None = None
    #: The window (its intent index) this notice's window replaces (``maintctl on --replace``): the same
    #: window moved, one calendar entry.
    replaces: int | None = None

    @property
    def window_id(self) -> str | None:
        """The window's identity, the same in its announce, on, start, end and off notices."""
        return f"{self.environment}-{self.window_index}" if self.window_index is not None else None

    @property
    def kind(self) -> str:
        """The event without its suffix (``announce-1764709203`` is an ``announce``)."""
        return self.event.split("-", 1)[0]

    @property
    def withdrawn(self) -> bool:
        """An ``off`` before the window's announced start: the window is cancelled, not ended."""
        return self.kind == "off" and self.starts_at is not None and self.starts_at > self.sent_at

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
            "window": {"id": self.window_id, "intent_index": self.window_index,
                       "starts_at": _iso(self.starts_at), "ends_at": _iso(self.ends_at)},
            "reason": self.reason,
            "message": self.message,
            "what_you_will_see": ({"api": {"status": 503, "retry_after": "seconds until the announced end", "text": self.impact}}
                                  if in_window else {"api": {"status": "normal"}}),
            "summary": self.summary(),
        }

    def body(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()


def notice_for(event: str, environment: str, intent: Intent, now: datetime, impact: str,
               window: Intent | None = None, replaces: int | None = None) -> Notice:
    """The notice of ``event`` for ``intent``; ``window`` is the window's own intent when ``intent`` is the closing one.

    The window (its identity, times, reason and message) comes from the
    maintenance intent that opened it, so a partner can match the ``end`` or
    ``off`` notice to the ``start`` and ``announce`` it received.
    """
    source = window if window is not None and window.mode is Mode.MAINTENANCE else intent
    in_window = source.mode is Mode.MAINTENANCE
    return Notice(event=event, environment=environment, intent_index=intent.index, sent_at=now,
                  starts_at=source.starts_at or (now if in_window and source is intent and event != "end" else None),
                  ends_at=source.ends_at, reason=source.reason, message=source.message, impact=impact,
                  window_index=source.index if in_window else None, replaces=replaces)


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
