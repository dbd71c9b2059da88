"""The worker role's step: stop every worker service for the window, restart what ran before.

Entering takes a snapshot of which services were running into the step's
notes in the state file — once per window — and then holds them (so nothing
starts them at boot mid-window) and stops them. Leaving starts exactly the snapshot's running services again,
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
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from agent.core.errors import StepError
from agent.core.model import Role
from agent.daemon.backends import BackendError, ServiceBackend
from agent.daemon.backends.factory import build_backend
from agent.daemon.steps import quiesce
from agent.daemon.steps.snapshotted import SnapshottedUnitsStep

if TYPE_CHECKING:
    from agent.config.roles import WorkerSection
    from agent.config.schema import AgentConfig
    from agent.daemon.steps.base import Step, StepContext


class WorkerServicesStep(SnapshottedUnitsStep):
    """Stop and keep stopped the configured worker services; restore them afterwards."""

    role = Role.WORKER

    repairs_drift = True
    local_check = True
    restore_verb = "starting"
    not_restored_yet = "what ran before the window is not restored yet"
    missing_after = "ran before the window"

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
    def from_config(cls, section: WorkerSection, holds_dir: Path) -> WorkerServicesStep:
        return cls(build_backend(section, holds_dir), section.services, on_drift=section.drift, hold_after_window=section.hold_after_window_seconds)

    def units(self) -> list[str]:
        return self.services

    def _snapshot_log(self, ctx: StepContext, snapshot: list[quiesce.ServiceRecord]) -> None:
        ctx.log.info("services snapshot taken", step=self.name, running=[r["name"] for r in snapshot if r["active"]])

    def _quiet_in_window(self) -> bool:
        return not quiesce.still_up(self.backend, self.backend.expand(self.services))

    def _up_in_window(self) -> list[str]:
        return quiesce.describe_up(self.backend, self.backend.expand(self.services))

    def apply(self, ctx: StepContext) -> None:
        try:
            _, up = self._quiesce_snapshotted(ctx)
        except BackendError as exc:
            raise StepError(self.name, exc.detail) from None
        if up:
            raise StepError(self.name, f"still running or not held after stopping ({self.backend.kind}): {quiesce.describe(up)}")


def build_worker_steps(config: AgentConfig) -> list[Step]:
    """The worker role's steps, in entering order (empty without a [worker] table)."""
    if config.worker is None:
        return []
    return [WorkerServicesStep.from_config(config.worker, config.agent.holds_dir)]
