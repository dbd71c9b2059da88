"""Which steps each role of this box runs, built from the config.

Within a role the steps run in list order when entering and in reverse
order when leaving (so ``web`` turns Consul maintenance off *before* its
smoke test runs). The flag file and the hooks belong to the box, not to a
role: they take the place of the box's last role in the entering order, so
they run after everything else has entered and first when leaving. The
alert gate ([alert_gate]) is the last step of the roles it gates, so it is the
first asked when they leave.

A role's steps are imported when the box has that role: a web box never loads
the HAProxy client or supervisor's XML-RPC (the agent's memory is its cost
on every box of the fleet).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.core.model import Role
from agent.daemon.steps.hooks import build_hook_steps

if TYPE_CHECKING:
    from agent.clients.consul import ConsulGateway
    from agent.config.schema import AgentConfig
    from agent.daemon.steps.base import Step


def role_steps(role: Role, config: AgentConfig, gateway: ConsulGateway) -> list[Step]:
    """The steps of one role, in entering order (their modules imported only now)."""
    if role is Role.WEB:
        from agent.daemon.steps.consul_maint import NodeMaintenanceStep
        from agent.daemon.steps.smoke import SmokeTestStep

        web = config.web
        smoke: list[Step] = [SmokeTestStep(web.smoke, web.smoke_attempts)] if web and web.smoke else []
        return [*smoke, NodeMaintenanceStep(gateway)]
    if role is Role.WORKER:
        from agent.daemon.steps.services import build_worker_steps

        return build_worker_steps(config)
    if role is Role.SCHEDULER:
        from agent.daemon.steps.jobs import build_scheduler_steps

        return build_scheduler_steps(config)
    from agent.daemon.steps.haproxy import build_edge_steps

    return build_edge_steps(config)


def build_steps(config: AgentConfig, gateway: ConsulGateway) -> dict[Role, list[Step]]:
    steps = {role: role_steps(role, config, gateway) for role in config.agent.roles}
    gated = config.gated_roles()
    if gated:
        from agent.daemon.steps.alert_gate import alert_gate_step

        for role in gated:  # last in, so first out: before traffic (web: rotation) comes back
            steps[role] = [*steps[role], alert_gate_step(config, role, gateway)]
    last = [r for r in config.agent.order if r in steps][-1]
    steps[last] = [*steps[last], *build_hook_steps(config, last)]
    return steps
