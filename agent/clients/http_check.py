"""Verify a traffic switch from the outside: request the public URLs, compare the answers.

Changing HAProxy's map proves only that HAProxy accepted a command. What
matters is what a partner or a user gets, so the edge step requests the public
frontend and requires the expected status and a marker in the body before the
box reports the new state. Redirects are not followed and proxy variables from
the environment are ignored, so the answer judged is the frontend's own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from agent.config.roles import SmokeCheck

if TYPE_CHECKING:  # imported where used: an edge agent between windows never loads requests (~8 MB)
    import requests


def describe_failure(check: SmokeCheck, status: int | None, body: str, elapsed: float, error: str = "") -> str | None:
    """Why ``check`` failed for this answer, or None when it passed. Pure, so it is unit-tested."""
    where = f"{check.name} ({check.url})"
    if error:
        return f"{where}: request failed: {error}"
    if status != check.expect_status:
        return f"{where}: expected HTTP {check.expect_status}, got {status}: {_excerpt(body)}"
    if check.expect_body is not None and check.expect_body not in body:
        return f"{where}: HTTP {status} but the body lacks {check.expect_body!r}: {_excerpt(body)}"
    if check.max_latency_seconds is not None and elapsed > check.max_latency_seconds:
        return f"{where}: answered in {elapsed:.2f}s, over the {check.max_latency_seconds:g}s limit"
    return None


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
        import requests

        with requests.Session() as session:
            session.trust_env = False
            results = (self._run(session, check) for check in self.checks)
            return [problem for problem in results if problem]

    @staticmethod
    def _run(session: requests.Session, check: SmokeCheck) -> str | None:
        import requests

        started = time.monotonic()
        try:
            response = session.get(check.url, headers=check.headers, timeout=check.timeout_seconds, allow_redirects=False)
        except requests.RequestException as exc:
            return describe_failure(check, None, "", 0.0, error=f"{type(exc).__name__}: {exc}")
        return describe_failure(check, response.status_code, response.text, time.monotonic() - started)
