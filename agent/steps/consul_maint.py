"""NodeMaintenanceStep: take this box's Consul node out of rotation (``consul maint``).

It calls the local Consul agent's ``/v1/agent/maintenance`` with the intent's
reason and verifies by reading the node's ``_node_maintenance`` check back.
Node maintenance persists across Consul agent restarts, so ``check`` is
always read from Consul, never remembered: toggling twice is impossible.
"""

from __future__ import annotations

from agent.consul import ConsulGateway
from agent.errors import MaintenanceAgentError, StepError
from agent.model import Mode, Role
from agent.steps.base import Step, StepContext


class NodeMaintenanceStep(Step):
    name = "consul-node-maintenance"
    role = Role.WEB
    repairs_drift = True

    def __init__(self, gateway: ConsulGateway):
        self.gateway = gateway

    def _state(self) -> bool:
        try:
            return self.gateway.node_maintenance()[0]
        except MaintenanceAgentError as exc:
            raise StepError(self.name, f"cannot read the node's {'_node_maintenance'} check: {exc}") from None

    def check(self, ctx: StepContext, target: Mode) -> bool:
        return self._state() == (target is Mode.MAINTENANCE)

    def apply(self, ctx: StepContext) -> None:
        reason = f"maintenance-agent: {ctx.intent.reason or 'planned maintenance'} (intent {ctx.intent.index})"
        self._set(True, reason[:250])

    def revert(self, ctx: StepContext) -> None:
        self._set(False, "")

    def _set(self, enable: bool, reason: str) -> None:
        try:
            self.gateway.set_node_maintenance(enable, reason)
        except MaintenanceAgentError as exc:
            verb = "enable" if enable else "disable"
            raise StepError(self.name, f"PUT /v1/agent/maintenance?enable={str(enable).lower()} ({verb}) failed: {exc}") from None
