"""Typed errors: each one says whether retrying can help.

The reconciler retries a ``TemporaryError`` after its ``delay`` (with capped,
jittered backoff on repeats) and reports a ``PermanentError`` without hammering
whatever refused. Errors are raised at the edges (Consul, HAProxy, service
managers) so the core never parses HTTP status codes or exit codes.
"""

from __future__ import annotations


class MaintenanceAgentError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(MaintenanceAgentError):
    """A configuration file is unreadable or invalid; ``problems`` lists each one."""

    def __init__(self, path: str, problems: list[str]):
        self.path = path
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{path}: {len(problems)} problem(s):\n{lines}")


class IntentError(MaintenanceAgentError):
    """The desired key holds a value that is not a valid intent. Nothing moves."""


class TemporaryError(MaintenanceAgentError):
    """Worth retrying after ``delay`` seconds (a hint; backoff may stretch it)."""

    def __init__(self, message: str, delay: float = 1.0):
        super().__init__(message)
        self.delay = delay


class PermanentError(MaintenanceAgentError):
    """Retrying the same request will not help until something else changes."""


class ConsulUnavailable(TemporaryError):
    """Consul did not answer, or answered 429/5xx, or has no leader."""


class ConsulPermissionDenied(PermanentError):
    """Consul answered 403: the token lacks a rule. ``rule`` names what is needed."""

    def __init__(self, message: str, rule: str = ""):
        super().__init__(f"{message} (needs ACL rule: {rule})" if rule else message)
        self.rule = rule


class CasConflict(MaintenanceAgentError):
    """A check-and-set write lost: someone else changed the key since we read it."""


class StepError(TemporaryError):
    """A step's ``apply``/``revert`` failed or did not hold afterwards.

    ``step`` names the step, ``detail`` carries the exact command, unit or URL and
    what it answered, so the status tells an operator what to look at.
    """

    def __init__(self, step: str, detail: str, delay: float = 0.0):
        super().__init__(f"{step}: {detail}", delay=delay)
        self.step = step
        self.detail = detail


class StepRefused(PermanentError):
    """A step's call was refused (a 403, a request the other side will never accept).

    Like ``StepError`` it names the step and the exact call, but retrying soon
    cannot help: it is reported and retried only at the slow rate.
    """

    def __init__(self, step: str, detail: str):
        super().__init__(f"{step}: {detail}")
        self.step = step
        self.detail = detail


def step_failure(step: str, detail: str, cause: BaseException | None) -> StepError | StepRefused:
    """The step's error for ``detail``, keeping the retry policy of what caused it (refused stays refused, a delay stays)."""
    if isinstance(cause, PermanentError):
        return StepRefused(step, detail)
    return StepError(step, detail, delay=cause.delay if isinstance(cause, TemporaryError) else 0.0)


class StepPending(MaintenanceAgentError):
    """A step is progressing but not finished (e.g. a job still draining).

    Not an error: the reconciler shows ``blocked_on`` and comes back later.
    """

    def __init__(self, blocked_on: str, recheck_after: float = 1.0):
        super().__init__(blocked_on)
        self.blocked_on = blocked_on
        self.recheck_after = recheck_after


class ShutdownRequested(Exception):  # not named ...Error: a request, raised to unwind a step
    """The agent was asked to stop: raised between two actions so no new one starts.

    Deliberately not a ``MaintenanceAgentError``: no step or retry policy may
    swallow it. The reconciler's loop ends on it; the state file already holds
    everything done so far (every change is saved as it happens).
    """


def retry_delay(error: BaseException | None, backoff_delay: float, slow: float) -> float:
    """How long to wait before trying again after ``error``, given the next backoff delay.

    - ``PermanentError`` (a 403, a refused request): the same request will not
      pass by itself, so it is retried only at the slow rate ``slow`` (the
      retry cap), never like a timeout; a new intent retries at once.
    - ``TemporaryError``: its ``delay`` is a floor (a server's hint), the
      capped, jittered backoff may stretch it.
    - anything else: the backoff.
    """
    if isinstance(error, PermanentError):
        return max(slow, backoff_delay)
    if isinstance(error, TemporaryError):
        return max(error.delay, backoff_delay)
    return backoff_delay
