"""Whether this box can make progress: its memory is usable and its decision loop does not fail.

Two conditions stop a box without any step failing, and both must be loud:

- ``MemoryHold``: the state file is unusable (garbage, truncated, empty, the
  wrong shape, an unknown state). It may have held the list of services to
  restart, so the box is held as it is and reports ``unknown`` (never
  ``active``), one log line names the file, ``maintenance_state_file_unreadable``
  is 1, until an operator runs ``maintenance-agent confirm-state-reset``.
- ``LoopHealth``: a tick failed outside any step (the state file cannot be
  written, a bug). Each failure counts in ``maintenance_loop_errors_total``;
  ``/readyz`` answers 503 with the error until a tick succeeds again.

And one that a step or a gate causes: ``Retries`` says when a failed action
may run again (capped, jittered backoff, or what the error's type asks for)
and is the one place a failure is counted, logged and shown in the status.
"""

from __future__ import annotations

import time
from typing import Any

from agent.core.errors import MaintenanceAgentError, PermanentError, retry_delay
from agent.core.model import Role, State
from agent.core.settings import BackoffPolicy
from agent.daemon.decision.record import BoxRecord
from agent.daemon.local.metrics import AgentMetrics
from agent.daemon.local.statefile import StateFile, StateFileUnwritable

RESET_COMMAND = "maintenance-agent confirm-state-reset"


class MemoryHold:
    def __init__(self, memory: StateFile, record: BoxRecord, metrics: AgentMetrics, log: Any):
        self.memory = memory
        self.record = record
        self.metrics = metrics
        self.log = log

    def holding(self) -> bool:
        """True while the box must be held; re-reads the file so an operator's reset resumes it.

        On resuming, ``record`` has reloaded the machine section: the caller rebuilds its machine.
        """
        if self.memory.problem is None and self.record.held is None:
            return False
        if self.memory.reload():
            state = self.record.load()
            self.log.warning("state file usable again; resuming", file=str(self.memory.path), state=state.value)
            self.record.held = None
            self.record.clear()
            self.metrics.state_file_unusable.set(0)
            self.metrics.state.state(state.value)
            return False
        problem = self.memory.problem or "unusable"
        if problem != self.record.held:
            self.record.held = problem
            self.log.error("state file unusable; holding the box as it is until an operator confirms a reset",
                           file=str(self.memory.path), problem=problem, recovery=RESET_COMMAND)
            self.record.error = f"state file unreadable: {problem}; holding the box as it is until an operator runs `{RESET_COMMAND}`"
            self.metrics.state_file_unusable.set(1)
            self.metrics.state.state(State.UNKNOWN.value)
        return True


class LoopHealth:
    def __init__(self, record: BoxRecord, metrics: AgentMetrics, log: Any):
        self.record = record
        self.metrics = metrics
        self.log = log
        #: Why the last tick failed (None while ticks succeed).
        self.error: str | None = None

    def failed(self, exc: Exception) -> None:
        """Count a failed tick and show it in the status (logged once per distinct error)."""
        self.metrics.loop_errors.inc()
        known = isinstance(exc, StateFileUnwritable)
        message = str(exc) if known else f"internal error: {type(exc).__name__}: {exc}"
        if message != self.error:
            if known:
                self.log.error("reconcile tick failed; the box cannot make progress", error=message)
            else:
                self.log.exception("reconcile tick failed; the box cannot make progress", error=message)
        self.error = message
        self.record.error = f"cannot make progress: {message}"

    def recovered(self) -> bool:
        """A tick succeeded; True if that ended a failure (worth a publish)."""
        if self.error is None:
            return False
        self.log.info("reconcile tick succeeds again", error_was=self.error)
        self.error = None
        if self.record.error and self.record.error.startswith("cannot make progress"):
            self.record.error = None
        return True


class Retries:
    def __init__(self, policy: BackoffPolicy, record: BoxRecord, metrics: AgentMetrics, log: Any):
        self.cap = policy.cap  # the slow rate: how long a refusal (a permanent error) waits
        self.backoff = policy.start()
        self.record = record
        self.metrics = metrics
        self.log = log
        self._due = 0.0  # time.monotonic() at which the failed action may run again

    def due_in(self) -> float:
        """Seconds until the failed action may run again (0: now)."""
        return max(0.0, self._due - time.monotonic())

    def reset(self) -> None:
        """Something new to try (an intent, a transition) or an action passed: the next failure starts the backoff over."""
        self._due = 0.0
        self.backoff.reset()

    def failed(self, role: Role, step: str, message: str, failure: MaintenanceAgentError | None = None) -> float:
        """Count and show a failure; the delay before a retry, as its type says (``retry_delay``): never skipped past."""
        delay = retry_delay(failure, self.backoff.next(), slow=self.cap)
        self._due = time.monotonic() + delay
        self.metrics.step_failures.labels(role.value, step).inc()
        kind = "refused" if isinstance(failure, PermanentError) else "failed"
        self.log.error(f"step {kind}; will retry", role=role.value, step=step, error=message, retry_in=round(delay, 2),
                       error_type=type(failure).__name__ if failure is not None else None)
        self.record.error = message if message.startswith(step) else f"{step}: {message}"
        return delay
