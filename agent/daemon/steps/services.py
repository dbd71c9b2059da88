"""The worker role's step: stop every worker service for the window, restart what ran before.

Entering takes a snapshot of which services were running (and enabled) into
the step's notes in the state file — once per window — and then stops and
disables them. Leaving starts exactly the snapshot's running services again,
so a service that was stopped before the window stays stopped, also across
agent restarts. The snapshot is cleared only once the restore fully holds.

Drift: while the box is in maintenance, nothing of the configured services
may run (a program started by hand, or by a configuration-management run that
"ensures" services, is drift). After the window, the step remembers what ran
before it (not the snapshot: that is consumed) for ``hold_after_window``
seconds: what stops in that time is drift too. Later, stopping a service is
an operator's business, not the agent's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

from agent.config.roles import WorkerSection
from agent.config.schema import AgentConfig
from agent.core.errors import StepError, StepPending
from agent.core.model import Mode, Role
from agent.daemon.backends import BackendError, ServiceBackend, build_backend
from agent.daemon.steps import quiesce
from agent.daemon.steps.base import Step, StepContext


class WorkerServicesStep(Step):
    """Stop and keep stopped the configured worker services; restore them afterwards."""

    role = Role.WORKER

    repairs_drift = True
    local_check = True

    def __init__(self, backend: ServiceBackend, services: list[str], name: str = "worker-services",
                 on_drift: Literal["repair", "report"] = "repair", hold_after_window: float = 0.0,
                 clock: Callable[[], float] = time.time):
        self.backend = backend
        self.services = list(services)
        self.name = name
        self.on_drift = on_drift
        self.hold_after_window = hold_after_window
        # Wall clock on purpose: the restore time is persisted and must mean the same after a restart.
        self.clock = clock

    @classmethod
    def from_config(cls, section: WorkerSection) -> WorkerServicesStep:
        return cls(build_backend(section), section.services, on_drift=section.drift, hold_after_window=section.hold_after_window_seconds)

    def check(self, ctx: StepContext, target: Mode) -> bool:
        try:
            if target is Mode.MAINTENANCE:
                return not quiesce.still_up(self.backend, self.backend.expand(self.services))
            # Back to normal only once the window's snapshot is consumed: a
            # snapshot left by a window that never completed must not be
            # reused by the next one (revert restores what is missing, then clears it).
            return quiesce.snapshot_from_notes(ctx.notes(self)) is None and not self._missing_after_window(ctx)
        except BackendError as exc:
            raise StepError(self.name, exc.detail) from None

    def drift(self, ctx: StepContext, target: Mode, quick: bool = False) -> list[str]:
        try:
            if target is Mode.MAINTENANCE:
                return quiesce.describe_up(self.backend, self.backend.expand(self.services))
            if quiesce.snapshot_from_notes(ctx.notes(self)) is not None:
                return ["what ran before the window is not restored yet"]
            return [f"{missing}, ran before the window" for missing in self._missing_after_window(ctx)]
        except BackendError as exc:
            raise StepError(self.name, exc.detail) from None

    def _held(self, ctx: StepContext) -> list[quiesce.ServiceRecord]:
        held = quiesce.held_after_window(ctx.notes(self), self.clock(), self.hold_after_window)
        if not held:
            return []
        configured = set(self.backend.expand(self.services))  # a service dropped from the config is not held
        return [r for r in held if r["name"] in configured]

    def _missing_after_window(self, ctx: StepContext) -> list[str]:
        return [f"{name} ({why})" for name, why in quiesce.not_restored(self.backend, self._held(ctx)).items()]

    def apply(self, ctx: StepContext) -> None:
        try:
            snapshot = self._snapshot_once(ctx)
            # Also what a glob matches only now (started after the snapshot): stopped, never restored.
            names = quiesce.union([r["name"] for r in snapshot], self.backend.expand(self.services))
            quiesce.quiesce(self.backend, names, ctx.heartbeat)
            up = quiesce.still_up(self.backend, names)
        except BackendError as exc:
            raise StepError(self.name, exc.detail) from None
        if quiesce.only_finishing(up):
            raise StepPending(f"waiting for {self.backend.kind} to finish stopping {quiesce.describe(up)}", recheck_after=1.0)
        if up:
            raise StepError(self.name, f"still running or enabled after stopping ({self.backend.kind}): {quiesce.describe(up)}")

    def _snapshot_once(self, ctx: StepContext) -> list[quiesce.ServiceRecord]:
        notes = ctx.notes(self)
        snapshot = quiesce.snapshot_from_notes(notes)
        if snapshot is None:
            snapshot = quiesce.take_snapshot(self.backend, self.services)
            ctx.save_notes(self, {"snapshot": snapshot, "intent_index": ctx.intent.index})
            ctx.log.info("services snapshot taken", step=self.name, running=[r["name"] for r in snapshot if r["active"]])
        return snapshot

    def revert(self, ctx: StepContext) -> None:
        notes = ctx.notes(self)
        if quiesce.restore_from_notes(self.name, self.backend, notes, verb="starting", heartbeat=ctx.heartbeat):
            snapshot = quiesce.snapshot_from_notes(notes) or []
            ctx.save_notes(self, quiesce.after_window_notes(snapshot, self.clock()) if self.hold_after_window > 0 else None)
            return
        try:
            held = self._held(ctx)
        except BackendError as exc:
            raise StepError(self.name, exc.detail) from None
        quiesce.restore_from_notes(self.name, self.backend, {"snapshot": held}, verb="starting", heartbeat=ctx.heartbeat)


def build_worker_steps(config: AgentConfig) -> list[Step]:
    """The worker role's steps, in entering order (empty without a [worker] table)."""
    if config.worker is None:
        return []
    return [WorkerServicesStep.from_config(config.worker)]
