"""The team's own channel: every window event, and "blocked" and "overrun", to a chat incoming webhook.

The people on the call should see the window move without watching a
terminal. A message is Slack's incoming-webhook JSON (``{"text": ...}``, which
Mattermost, Rocket.Chat and Teams' Slack-compatible endpoints take too): one
line saying what happened, to which environment, and what to look at. It is
delivered, retried and logged like a partner's webhook (``AttemptLoop``), under
the recipient ``_team`` (no partner name starts with ``_``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlsplit

from agent.partners.delivery import AttemptLoop, Delivery, Outcome, RetryPolicy
from agent.partners.notices import Notice
from agent.partners.webhook import USER_AGENT, post_once

TEAM = "_team"

_ICON = {"announce": ":calendar:", "on": ":calendar:", "start": ":construction:", "end": ":white_check_mark:",
         "off": ":arrow_backward:", "blocked": ":warning:", "overrun": ":hourglass:"}


def _at(moment: datetime | None) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if moment else "no end announced"


def window_text(notice: Notice) -> str:
    """One line for a window event (announce, on, start, end, off)."""
    kind = notice.kind
    where = f"*{notice.environment}*"
    why = f" ({notice.reason})" if notice.reason else ""
    if kind == "start":
        line = f"maintenance started on {where}{why}: API answers 503 until {_at(notice.ends_at)}"
    elif kind == "end":
        line = f"maintenance ended on {where}{why}: traffic is back"
    elif kind == "off":
        line = (f"window withdrawn on {where}{why}" if notice.withdrawn else f"leaving maintenance on {where}{why}")
    else:
        what = "window announced" if kind == "announce" else "window scheduled"
        line = f"{what} on {where}{why}: {_at(notice.starts_at or notice.sent_at)} to {_at(notice.ends_at)}"
    return f"{_ICON.get(kind, '')} {line} [{notice.id}]".strip()


def blocked_text(environment: str, node: str, intent_index: int, state: str, why: str, seconds: float) -> str:
    return f"{_ICON['blocked']} *{environment}* {node} has been {state} and blocked for {seconds:.0f}s: {why} [intent {intent_index}]"


def overrun_text(environment: str, window_index: int, ends_at: datetime, node: str, state: str) -> str:
    return (f"{_ICON['overrun']} *{environment}* window {window_index} overrun: past its announced end ({_at(ends_at)}); "
            f"{node} is still {state}")


def payload(text: str) -> str:
    return json.dumps({"text": text}, ensure_ascii=False, sort_keys=True)


def where(url: str) -> str:
    """What the delivery log shows of the chat URL: its host only (the path is the secret)."""
    return f"chat:{urlsplit(url).hostname or '?'}"


class ChatSender:
    """POSTs one stored payload to the team's chat webhook, retried like a partner's webhook."""

    def __init__(self, url: Callable[[], str], timeout: float, attempts: int, backoff: float, backoff_max: float,
                 stop: threading.Event | None = None, clock: Callable[[], float] = time.time):
        self.url = url
        self.timeout = timeout
        self.loop = AttemptLoop(RetryPolicy(attempts, backoff, backoff_max), stop, clock)

    def deliver(self, delivery: Delivery, record: Callable[[Delivery], bool]) -> Delivery:
        import requests  # here: an agent that sends nothing never loads it (~8 MB)

        body = delivery.body.encode()
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        with requests.Session() as session:
            def send_once() -> Outcome:
                try:
                    url = self.url()
                except OSError as exc:
                    return Outcome(error=f"cannot read the chat URL file: {exc.strerror}")
                return post_once(session, url, body, headers, self.timeout)

            return self.loop.run(delivery, send_once, record)
