"""AlertGateStep: outside traffic (or a web box's rotation) comes back only when no alert that matters is firing.

Every web box passing its smoke test does not make the platform healthy: a
database replica still catching up after SQL-B, or any other critical alert,
would go unseen. This step sits *last* in the gated role's list, so when
leaving maintenance (the list runs backwards) it is the first step: before the
edge's traffic switch (and, if configured, before web's ``consul maint`` off).

- entering: ``apply`` arms the gate for the window (its intent index, in the
  step's notes). It is the role's last step in: a box that turns back before
  it never changed anything behind the edge, as no later role had moved yet.
- leaving: ``check`` holds while armed; ``revert`` asks Prometheus (or
  Alertmanager) which alerts fire. Alerts matching the selector and not covered
  by the window's own silence hold the box: ``StepPending`` names them
  (``blocked_on``), re-asked every ``recheck_seconds``. No answer holds too,
  as a ``StepError`` saying so (retried, counted, in the status): the gate
  never opens on an answer it could not get. An operator's override for this
  window (``maintctl alert-gate override``) opens it whatever Prometheus says;
  it is logged with its reason and author, and kept in the history by maintctl.
  Once open, the gate disarms (notes cleared), so a restart, a drift pass or a
  new intent of the same mode never asks again until the next window.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from agent.clients.alerts import AlertSourceUnavailable, FiringAlerts
from agent.core.alert_gate import Override, blocked_on, blocking
from agent.core.errors import MaintenanceAgentError, StepError, StepPending
from agent.core.model import Mode, Role
from agent.core.selectors import LabelMatcher, parse_selector
from agent.daemon.steps.base import Step, StepContext
from agent.partners.silences import matchers_for

if TYPE_CHECKING:
    from agent.clients.consul import ConsulKV
    from agent.config.schema import AgentConfig


class AlertGateStep(Step):
    def __init__(self, role: Role, alerts: FiringAlerts, selector: Sequence[LabelMatcher], silenced: Sequence[LabelMatcher],
                 gateway: ConsulKV, override_key: str, recheck: float):
        self.role = role
        self.name = f"alert-gate-{role.value}"
        self.alerts = alerts
        self.selector = tuple(selector)
        self.silenced = tuple(silenced)
        self.gateway = gateway
        self.override_key = override_key
        self.recheck = recheck

    @staticmethod
    def _armed_for(ctx: StepContext, step: Step) -> int | None:
        armed = ctx.notes(step).get("armed_for")
        return int(armed) if armed is not None else None

    def check(self, ctx: StepContext, target: Mode) -> bool:
        armed = self._armed_for(ctx, self) is not None
        return armed if target is Mode.MAINTENANCE else not armed

    def apply(self, ctx: StepContext) -> None:
        ctx.save_notes(self, {"armed_for": ctx.intent.index, "armed_at": time.time()})

    def revert(self, ctx: StepContext) -> None:
        armed_for = self._armed_for(ctx, self)
        if armed_for is None:
            return
        override = self._override(ctx)
        if override is not None and override.covers(armed_for):
            ctx.log.warning("alert gate overridden for this window", step=self.name, reason=override.reason, by=override.by,
                            at=override.at, window=armed_for)
            ctx.save_notes(self, None)
            return
        try:
            firing = self.alerts.firing()
        except AlertSourceUnavailable as exc:
            raise StepError(self.name, f"cannot tell whether alerts fire, so traffic stays on the maintenance page: {exc} "
                                       "(override for this window: maintctl alert-gate override --reason ...)", delay=self.recheck) from None
        held = blocking(firing, self.selector, self.silenced)
        if held:
            raise StepPending(blocked_on(held, self.alerts.describe()), recheck_after=self.recheck)
        ctx.log.info("alert gate open: no alert that matters is firing", step=self.name, source=self.alerts.describe(),
                     firing=len(firing), window=armed_for)
        ctx.save_notes(self, None)

    def _override(self, ctx: StepContext) -> Override | None:
        try:
            read = self.gateway.get_key(self.override_key)
            return Override.from_json(read.value) if read.value else None
        except MaintenanceAgentError as exc:
            ctx.log.warning("cannot read the alert gate's override; asking the alerts", step=self.name, error=str(exc))
        except (ValueError, KeyError, TypeError) as exc:
            ctx.log.warning("the alert gate's override is unreadable; ignored", step=self.name, error=str(exc))
        return None


_OPERATOR = {(True, False): "=", (False, False): "!=", (True, True): "=~", (False, True): "!~"}
"""Alertmanager's (isEqual, isRegex) as a Prometheus operator."""


def alert_gate_step(config: AgentConfig, role: Role, gateway: ConsulKV) -> AlertGateStep:
    """The gate of ``role`` from [alert_gate]: its selector in this environment, less what [alertmanager]'s silence covers."""
    gate = config.alert_gate
    assert gate is not None
    environment = config.agent.environment
    selector = parse_selector(gate.selector)
    if not any(m.name == "env" for m in selector):
        selector = (*selector, LabelMatcher("env", "=", environment))
    silenced: tuple[LabelMatcher, ...] = ()
    if config.alertmanager is not None:
        silenced = tuple(LabelMatcher(m["name"], _OPERATOR[(m["isEqual"], m["isRegex"])], m["value"])
                         for m in matchers_for(config.alertmanager.matchers, environment))
    return AlertGateStep(role, FiringAlerts(gate.source, gate.url, gate.timeout_seconds), selector, silenced, gateway,
                         f"{config.env_prefix}/alert-gate/override", gate.recheck_seconds)
