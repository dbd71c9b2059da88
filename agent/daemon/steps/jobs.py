"""The scheduler role's step: disable every scheduled job, let running ones finish (bounded).

Entering snapshots which jobs were active (once per window), holds and stops
their triggers (systemd timers, supervisor programs, commands), then waits for
runs already in progress: ``StepPending("draining <job>")`` until they finish
or ``drain_timeout_seconds`` passes. The drain's start is kept in the notes,
so an agent restart does not grant a fresh timeout. After the timeout,
``on_drain_timeout = "stop"`` stops the runs, ``"wait"`` keeps waiting and
says it is overdue. Leaving releases the holds and starts exactly what was
active.

Drift, as for the worker's services: in maintenance no configured job may be
active, running or released (a timer started by hand is drift); after the
window, what was active before stays so for ``hold_after_window`` seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from agent.core.errors import StepError, StepPending
from agent.core.model import Role
from agent.daemon.backends import BackendError, ServiceBackend
from agent.daemon.backends.factory import build_backend
from agent.daemon.steps import quiesce
from agent.daemon.steps.snapshotted import SnapshottedUnitsStep

if TYPE_CHECKING:
    from agent.config.roles import SchedulerSection
    from agent.config.schema import AgentConfig
    from agent.daemon.steps.base import Step, StepContext


class SchedulerJobsStep(SnapshottedUnitsStep):
    """Disable the configured jobs, drain running ones, enable them again afterwards."""

    role = Role.SCHEDULER
    repairs_drift = True
    local_check = True
    restore_verb = "re-enabling"
    not_restored_yet = "what was active before the window is not restored yet"
    missing_after = "before the window"

    def __init__(
        self,
        backend: ServiceBackend,
        jobs: list[str],
        drain_timeout: float,
        on_drain_timeout: Literal["stop", "wait"],
        drain_poll: float = 5.0,
        clock: Callable[[], float] = time.time,
        name: str = "scheduler-jobs",
        on_drift: Literal["repair", "report"] = "repair",
        hold_after_window: float = 0.0,
    ):
        self.backend = backend
        self.jobs = list(jobs)
        self.drain_timeout = drain_timeout
        self.on_drain_timeout = on_drain_timeout
        self.drain_poll = drain_poll
        # Wall clock on purpose: the drain's start is persisted and must mean the same after a restart.
        self.clock = clock
        self.name = name
        self.on_drift = on_drift
        self.hold_after_window = hold_after_window

    @classmethod
    def from_config(cls, section: SchedulerSection, holds_dir: Path) -> SchedulerJobsStep:
        return cls(
            build_backend(section, holds_dir), section.jobs, drain_timeout=section.drain_timeout_seconds,
            on_drain_timeout=section.on_drain_timeout, drain_poll=section.drain_poll_seconds,
            on_drift=section.drift, hold_after_window=section.hold_after_window_seconds,
        )

    def units(self) -> list[str]:
        return self.jobs

    def _snapshot_log(self, ctx: StepContext, snapshot: list[quiesce.ServiceRecord]) -> None:
        ctx.log.info("jobs snapshot taken", step=self.name, active=[r["name"] for r in snapshot if r["active"]])

    def _quiet_in_window(self) -> bool:
        names = self.backend.expand(self.jobs)
        return not quiesce.still_up(self.backend, names) and not self._running(names)

    def _up_in_window(self) -> list[str]:
        names = self.backend.expand(self.jobs)
        return quiesce.describe_up(self.backend, names) + [f"{job} running ({', '.join(runs)})" for job, runs in self._running(names).items()]

    def apply(self, ctx: StepContext) -> None:
        try:
            names = self._disable_all(ctx)
            running = self._running(names)
            if running:
                self._drain(ctx, running)
                running = self._running(names)
        except BackendError as exc:
            raise StepError(self.name, exc.detail) from None
        if running:
            raise StepError(self.name, f"still running after stopping ({self.backend.kind}): {_describe_runs(running)}")
        self._forget_drain(ctx)

    def _disable_all(self, ctx: StepContext) -> list[str]:
        names, up = self._quiesce_snapshotted(ctx)
        if up:
            raise BackendError(f"still active or not held after disabling ({self.backend.kind}): {quiesce.describe(up)}")
        return names

    def _running(self, names: list[str]) -> dict[str, list[str]]:
        """Jobs with a run in progress, and what is running for each."""
        runs = {name: self.backend.running_jobs(name) for name in names}
        return {name: found for name, found in runs.items() if found}

    def _drain(self, ctx: StepContext, running: dict[str, list[str]]) -> None:
        """Return once it is time to stop the runs; raise ``StepPending`` while they may still finish."""
        notes = ctx.notes(self)
        now = self.clock()
        started = notes.get("drain_started_at")
        if started is None:
            started = now
            ctx.save_notes(self, {**notes, "drain_started_at": started})
        waited = now - float(started)
        shown = _describe_runs(running)
        if waited < self.drain_timeout:
            left = self.drain_timeout - waited
            raise StepPending(f"draining {shown} ({left:.0f}s left of {self.drain_timeout:g}s)", recheck_after=min(self.drain_poll, left))
        if self.on_drain_timeout == "wait":
            ctx.log.warning("drain timeout passed, still waiting", step=self.name, running=shown, waited_seconds=round(waited))
            raise StepPending(
                f"draining {shown}: overdue by {waited - self.drain_timeout:.0f}s (drain timeout {self.drain_timeout:g}s, on_drain_timeout = wait)",
                recheck_after=self.drain_poll,
            )
        ctx.log.warning("drain timeout passed, stopping running jobs", step=self.name, running=shown)
        for job in running:
            self.backend.stop_running_job(job)

    def _forget_drain(self, ctx: StepContext) -> None:
        notes = ctx.notes(self)
        if "drain_started_at" in notes:
            ctx.save_notes(self, {k: v for k, v in notes.items() if k != "drain_started_at"})


def _describe_runs(running: dict[str, list[str]]) -> str:
    return ", ".join(job if runs == [job] else f"{job} ({', '.join(runs)})" for job, runs in running.items())


def build_scheduler_steps(config: AgentConfig) -> list[Step]:
    """The scheduler role's steps, in entering order (empty without a [scheduler] table)."""
    if config.scheduler is None:
        return []
    return [SchedulerJobsStep.from_config(config.scheduler, config.agent.holds_dir)]
