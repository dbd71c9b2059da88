"""Which steps each role of this box runs, built from the config.

Within a role the steps run in list order when entering and in reverse
order when leaving (so ``web`` turns Consul maintenance off *before* its
smoke test runs). Hooks and the flag file belong to the box, not a role:
they run after the box's last role has entered, and first when leaving.
"""

from __future__ import annotations

from agent.config import AgentConfig
from agent.consul import ConsulGateway
from agent.model import Role
from agent.steps.base import Step
from agent.steps.consul_maint import NodeMaintenanceStep
from agent.steps.smoke import SmokeTestStep


def build_steps(config: AgentConfig, gateway: ConsulGateway) -> dict[Role, list[Step]]:
    steps: dict[Role, list[Step]] = {}
    for role in config.agent.roles:
        if role is Role.WEB:
            web = config.web
            smoke = [SmokeTestStep(web.smoke, web.smoke_attempts)] if web and web.smoke else []
            steps[role] = [*smoke, NodeMaintenanceStep(gateway)]
        else:
            steps[role] = _role_steps(role, config)
    return steps


def _role_steps(role: Role, config: AgentConfig) -> list[Step]:
    raise ValueError(f"role {role.value!r} has no steps in this build")
