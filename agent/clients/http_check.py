"""One HTTP check, for the edge's verification of a traffic switch and for the web box's smoke test.

Changing HAProxy's map proves only that HAProxy accepted a command, and a web
box out of ``consul maint`` proves nothing about its UI: what matters is what
a partner or a user gets. Both steps therefore request URLs and judge the
answers with the same ``SmokeCheck`` rules, implemented once here:

- **no proxy, no redirect**: the request goes straight to the URL's host
  (``http.client``, which reads no proxy variables), and a redirect is judged
  as the answer it is, so what is judged is the frontend's or the box's own;
- **status**: the answer's status must be ``expect_status``;
- **body**: with ``expect_body`` (a non-empty marker: the config refuses an
  empty one), the marker must be in the first ``MAX_BODY`` bytes, decoded
  with the answer's charset (UTF-8 when it names none);
- **latency**: with ``max_latency_seconds``, the whole exchange — connect,
  request, status, headers and body — must take no longer;
- ``timeout_seconds`` bounds the connect and each read.

The first failure of a check is one line naming the check, the URL and what
came back, so a step's error (and the box's status) says exactly why.
"""

from __future__ import annotations

import http.client
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from agent.config.roles import SmokeCheck

MAX_BODY = 1 << 20
"""Bytes of a body read to look for the marker: a check of a page, not a download."""


@dataclass(frozen=True)
class Answer:
    """What a request got: ``status`` and ``body`` (None and "" when it failed: ``error`` says how), in ``elapsed`` seconds."""

    status: int | None
    body: str
    elapsed: float
    error: str = ""


def fetch(check: SmokeCheck) -> Answer:
    """GET ``check.url`` as the rules above say."""
    parts = urlsplit(check.url)
    if parts.scheme == "https":
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname or "", parts.port, timeout=check.timeout_seconds, context=ssl.create_default_context())
    else:
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=check.timeout_seconds)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    started = time.monotonic()
    try:
        connection.request("GET", target, headers={"User-Agent": "maintenance-agent", **check.headers})
        response = connection.getresponse()
        raw = response.read(MAX_BODY)
        body = raw.decode(response.headers.get_content_charset() or "utf-8", errors="replace")
        return Answer(response.status, body, time.monotonic() - started)
    except (OSError, http.client.HTTPException, LookupError) as exc:  # LookupError: a charset Python does not know
        return Answer(None, "", time.monotonic() - started, error=f"{type(exc).__name__}: {exc}")
    finally:
        connection.close()


def describe_failure(check: SmokeCheck, answer: Answer) -> str | None:
    """Why ``check`` failed for ``answer``, or None when it passed. Pure, so every rule is unit-tested."""
    where = f"{check.name}: GET {check.url}"
    if answer.error:
        return f"{where} failed: {answer.error}"
    if answer.status != check.expect_status:
        return f"{where} answered {answer.status}, expected {check.expect_status}: {_excerpt(answer.body)}"
    if check.expect_body is not None and check.expect_body not in answer.body:
        return f"{where} answered {answer.status} but the body lacks {check.expect_body!r}: {_excerpt(answer.body)}"
    if check.max_latency_seconds is not None and answer.elapsed > check.max_latency_seconds:
        return f"{where} took {answer.elapsed:.2f}s, over the {check.max_latency_seconds:g}s limit"
    return None


def run_check(check: SmokeCheck) -> str | None:
    """Request and judge one check: None when it passed, else what failed."""
    return describe_failure(check, fetch(check))


def _excerpt(body: str, limit: int = 120) -> str:
    flat = " ".join(body.split())
    return repr(flat if len(flat) <= limit else flat[: limit - 3] + "...")


class FrontendVerifier:
    """Runs a list of checks, retrying a few times because a switch is not seen instantly everywhere."""

    def __init__(
        self,
        checks: Sequence[SmokeCheck],
        attempts: int = 3,
        interval: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.checks = tuple(checks)
        self.attempts = attempts
        self.interval = interval
        self._sleep = sleep

    def verify(self) -> list[str]:
        """The failures of the last attempt; an empty list means every check passed."""
        failures: list[str] = []
        for attempt in range(self.attempts):
            if attempt:
                self._sleep(self.interval)
            failures = self.run_once()
            if not failures:
                break
        return failures

    def run_once(self) -> list[str]:
        return [problem for check in self.checks if (problem := run_check(check))]
