"""One signed POST of a notice to a partner's webhook (and the plain POST of the team's chat message).

What a partner must verify is in ``agent.partners.notices`` (``sign``) and
docs/partners.md; retries and the delivery log are ``AttemptLoop``'s. An
answer other than 2xx is an error; a 4xx other than 408/425/429 is hopeless
(retrying the same request cannot fix it). Redirects are not followed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from agent.partners.delivery import AttemptLoop, Delivery, Outcome, RetryPolicy, short
from agent.partners.notices import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, sign

if TYPE_CHECKING:  # imported where a request is sent: an agent that sends none never loads it (~8 MB)
    import requests

USER_AGENT = "maintenance-agent-notices/1"


def post_once(session: requests.Session, url: str, body: bytes, headers: dict[str, str], timeout: float) -> Outcome:
    """One POST; its answer as an ``Outcome``."""
    import requests

    try:
        response = session.post(url, data=body, headers=headers, timeout=timeout, allow_redirects=False)
    except requests.RequestException as exc:
        return Outcome(error=short(exc))
    status = response.status_code
    if 200 <= status < 300:
        return Outcome(status=status)
    return Outcome(status=status, error=f"HTTP {status}: {response.text[:200]}", hopeless=400 <= status < 500 and status not in (408, 425, 429))


class WebhookSender:
    """POSTs one signed body to one URL until a 2xx, a hopeless 4xx, the attempts run out, or ``stop`` is set."""

    def __init__(self, timeout: float, attempts: int, backoff: float, backoff_max: float,
                 stop: threading.Event | None = None, clock: Callable[[], float] = time.time):
        self.timeout = timeout
        self.clock = clock
        self.loop = AttemptLoop(RetryPolicy(attempts, backoff, backoff_max), stop, clock)

    @property
    def stop(self) -> threading.Event:
        return self.loop.stop

    def deliver(self, delivery: Delivery, secret: bytes, record: Callable[[Delivery], bool]) -> Delivery:
        import requests

        body = delivery.body.encode()
        with requests.Session() as session:
            def send_once() -> Outcome:
                headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(secret, body, int(self.clock())),
                           EVENT_HEADER: delivery.event, DELIVERY_HEADER: delivery.notice_id, "User-Agent": USER_AGENT}
                return post_once(session, delivery.url, body, headers, self.timeout)

            return self.loop.run(delivery, send_once, record)
