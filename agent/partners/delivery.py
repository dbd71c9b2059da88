"""One notice to one recipient over one channel: retries with backoff, and an audit log that holds every attempt.

Webhooks, email and the team's chat differ only in how one attempt is made
(``send_once``); how often it is tried, when it is given up, and what the
delivery log says are the same, here. An attempt is **recorded before it is
sent**: the log in Consul gets the attempt as ``answered: false`` first, and
its answer (status, error, seconds) after. So an attempt whose answer was
never seen (the sender was stopped or crashed while the recipient held it)
stays in the log as unanswered, and the log never lists fewer attempts than
the recipient received. When that first write fails, nothing is sent: an
attempt the log cannot hold is not made (it is tried again after a backoff).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from agent.core.settings import BackoffPolicy


@dataclass
class Attempt:
    """One try: when, and what came back (``answered`` false: sent, no answer seen; ``status``: HTTP status or SMTP reply code)."""

    at: str
    status: int | None
    error: str | None
    seconds: float | None
    answered: bool = True

    def describe(self) -> str:
        if not self.answered:
            return "no answer seen (still in flight, or the sender stopped before one)"
        return self.error or f"ok ({self.status})"


@dataclass
class Delivery:
    """The delivery log of one notice to one recipient over one channel (kept in Consul by the dispatcher)."""

    notice_id: str
    event: str
    partner: str
    url: str  # where it goes: the webhook URL, mailto:<addresses>, or the chat host (never the chat URL: it is a secret)
    claimed_by: str
    claimed_at: str
    state: str = "sending"  # sending → delivered | failed
    attempts: list[Attempt] = field(default_factory=list)
    body: str = ""
    channel: str = "webhook"  # webhook | email | chat

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, raw: bytes | str) -> Delivery:
        doc = json.loads(raw)
        doc["attempts"] = [Attempt(**a) for a in doc.get("attempts", [])]
        return cls(**doc)

    @property
    def last(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None


@dataclass(frozen=True)
class Outcome:
    """What one attempt came back with: ``error`` None is success; ``hopeless`` stops retrying (a 4xx, a refused address)."""

    status: int | None = None
    error: str | None = None
    hopeless: bool = False


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int
    backoff: float
    backoff_max: float


class AttemptLoop:
    """Make attempts until one succeeds, one is hopeless, the attempts run out, or ``stop`` is set."""

    def __init__(self, policy: RetryPolicy, stop: threading.Event | None = None, clock: Callable[[], float] = time.time):
        self.policy = policy
        self.stop = stop or threading.Event()
        self.clock = clock

    def run(self, delivery: Delivery, send_once: Callable[[], Outcome], record: Callable[[Delivery], bool]) -> Delivery:
        """``record`` writes the log and says whether it could; the state stays ``sending`` when stopped (resumed later)."""
        backoff = BackoffPolicy(base=self.policy.backoff, cap=self.policy.backoff_max).start()
        while len(delivery.attempts) < self.policy.attempts and not self.stop.is_set():
            at = datetime.fromtimestamp(self.clock(), UTC).isoformat()
            delivery.attempts.append(Attempt(at=at, status=None, error=None, seconds=None, answered=False))
            if not record(delivery):
                delivery.attempts.pop()  # not in the log: not sent; the log is tried again after a pause
                self.stop.wait(backoff.next())
                continue
            started = time.monotonic()
            outcome = send_once()
            delivery.attempts[-1] = Attempt(at=at, status=outcome.status, error=outcome.error,
                                            seconds=round(time.monotonic() - started, 3))
            if outcome.error is None:
                delivery.state = "delivered"
                break
            if outcome.hopeless or len(delivery.attempts) >= self.policy.attempts:
                delivery.state = "failed"
                break
            record(delivery)
            self.stop.wait(backoff.next())
        record(delivery)
        return delivery


def short(exc: BaseException, limit: int = 200) -> str:
    """An exception as one line for the log: its type and the start of its text."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:limit]}"


def as_dict(delivery: Delivery) -> dict[str, Any]:
    """What ``maintctl notices`` shows of a delivery (the body left out)."""
    last = delivery.last
    return {"notice": delivery.notice_id, "event": delivery.event, "partner": delivery.partner, "channel": delivery.channel,
            "to": delivery.url, "state": delivery.state, "claimed_by": delivery.claimed_by, "attempts": len(delivery.attempts),
            "unanswered": sum(1 for a in delivery.attempts if not a.answered),
            "last": last.describe() if last else None}
