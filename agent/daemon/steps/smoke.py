"""SmokeTestStep: before a web box reports ``active`` again, its own UI/API must answer.

Nothing to do on entering. On leaving it runs every configured check
(status code, a marker in the body, latency) against the box's own
endpoints, with the same rules as the edge's verification
(``agent.clients.http_check``); the first failure becomes a ``StepError``
naming the check, the URL and what came back, so the fleet stays on the
maintenance page and the status says exactly why.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from agent.clients.http_check import run_check
from agent.core.errors import StepError
from agent.core.model import Mode, Role
from agent.daemon.steps.base import Step, StepContext

if TYPE_CHECKING:
    from agent.config.roles import SmokeCheck


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
                failure = run_check(check)
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
