"""SmokeTestStep: before a web box reports ``active`` again, its own UI/API must answer.

Nothing to do on entering. On leaving it runs every configured check
(status code, a marker in the body, latency) against the box's own
endpoints; the first failure becomes a ``StepError`` naming the check, the
URL and what came back, so the fleet stays on the maintenance page and the
status says exactly why.
"""

from __future__ import annotations

import time

from agent.config.roles import SmokeCheck
from agent.core.errors import StepError
from agent.core.model import Mode, Role
from agent.daemon.steps.base import Step, StepContext


def run_smoke_check(check: SmokeCheck) -> str | None:
    """Run one check; None when it passes, else what failed."""
    import requests  # here, not at the top: a web agent between windows never loads it (~8 MB)

    started = time.monotonic()
    try:
        response = requests.get(check.url, timeout=check.timeout_seconds, headers=check.headers, allow_redirects=False)
    except requests.RequestException as exc:
        return f"{check.name}: GET {check.url} failed: {type(exc).__name__}: {str(exc)[:200]}"
    elapsed = time.monotonic() - started
    if response.status_code != check.expect_status:
        return f"{check.name}: GET {check.url} answered {response.status_code}, expected {check.expect_status}: {response.text[:120]!r}"
    if check.expect_body and check.expect_body not in response.text:
        return f"{check.name}: GET {check.url} body lacks {check.expect_body!r}"
    if check.max_latency_seconds is not None and elapsed > check.max_latency_seconds:
        return f"{check.name}: GET {check.url} took {elapsed:.2f}s, more than {check.max_latency_seconds}s"
    return None


class SmokeTestStep(Step):
    name = "smoke-test"
    role = Role.WEB

    def __init__(self, checks: list[SmokeCheck], attempts: int = 1):
        self.checks = checks
        self.attempts = attempts

    def check(self, ctx: StepContext, target: Mode) -> bool:
        if target is Mode.MAINTENANCE:
            return True  # nothing to hold while in maintenance
        notes = ctx.notes(self)
        return notes.get("passed_for") == ctx.intent.index

    def apply(self, ctx: StepContext) -> None:
        ctx.save_notes(self, None)

    def revert(self, ctx: StepContext) -> None:
        failure = None
        for attempt in range(self.attempts):
            failure = None
            for check in self.checks:
                ctx.heartbeat()
                failure = run_smoke_check(check)
                if failure:
                    break
            if failure is None:
                break
            if attempt + 1 < self.attempts:
                time.sleep(1.0)
        if failure:
            raise StepError(self.name, failure)
        ctx.save_notes(self, {"passed_for": ctx.intent.index})
        ctx.log.info("smoke tests passed", checks=[c.name for c in self.checks])
