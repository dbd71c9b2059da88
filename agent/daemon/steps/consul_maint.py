"""NodeMaintenanceStep: take this box's Consul node out of rotation (``consul maint``).

It calls the local Consul agent's ``/v1/agent/maintenance`` with the intent's
reason and verifies by reading the node's ``_node_maintenance`` check back.
Node maintenance persists across Consul agent restarts, so ``check`` is
always read from Consul, never remembered: toggling twice is impossible.
Maintenance someone else set (another reason) is left alone when leaving.
"""

from __future__ import annotations

from agent.clients.consul import ConsulGateway
from agent.core.errors import MaintenanceAgentError, step_failure
from agent.core.model import Mode, Role
from agent.daemon.steps.base import Step, StepContext

REASON_PREFIX = "maintenance-agent:"
"""Marks node maintenance this agent set; any other reason belongs to someone else."""


class NodeMaintenanceStep(Step):
    name = "consul-node-maintenance"
    role = Role.WEB
    repairs_drift = True

    def __init__(self, gateway: ConsulGateway):
        self.gateway = gateway
        self._active_verified = False  # back to normal: checked once since this process started

    def _state(self) -> tuple[bool, str]:
        try:
            return self.gateway.node_maintenance()
        except MaintenanceAgentError as exc:
            raise step_failure(self.name, f"cannot read the node's _node_maintenance check: {exc}", exc) from None

    def check(self, ctx: StepContext, target: Mode) -> bool:
        on, reason = self._state()
        if target is Mode.MAINTENANCE:
            return on
        if on and not reason.startswith(REASON_PREFIX):
            # Someone else (a deploy, an operator's `consul maint`) took the
            # node out of rotation: not ours to undo.
            ctx.log.warning("node maintenance set by someone else; leaving it on", reason=reason)
            return True
        return not on

    def drift(self, ctx: StepContext, target: Mode, quick: bool = False) -> list[str]:
        """In a window, every pass (``consul maint -disable`` by hand is drift). Back to normal, once per process.

        After a window there is nothing of ours left to drift: only this agent sets node maintenance with its
        reason, and leaving verified it was cleared; maintenance set by someone else is not ours to undo. So a
        settled, active web box asks Consul once after it starts (a state file lost mid-window would otherwise
        leave our maintenance on for good) and then nothing: its idle cost stays two blocking queries a minute.
        """
        if target is Mode.MAINTENANCE:
            return super().drift(ctx, target, quick)
        if self._active_verified:
            return []
        changed = super().drift(ctx, target, quick)
        self._active_verified = not changed  # a repair is checked again on the next pass
        return changed

    def apply(self, ctx: StepContext) -> None:
        reason = f"{REASON_PREFIX} {ctx.intent.reason or 'planned maintenance'} (intent {ctx.intent.index})"
        self._set(True, reason[:250])

    def revert(self, ctx: StepContext) -> None:
        self._set(False, "")

    def _set(self, enable: bool, reason: str) -> None:
        try:
            self.gateway.set_node_maintenance(enable, reason)
        except MaintenanceAgentError as exc:
            verb = "enable" if enable else "disable"
            raise step_failure(self.name, f"PUT /v1/agent/maintenance?enable={str(enable).lower()} ({verb}) failed: {exc}", exc) from None
