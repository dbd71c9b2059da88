"""The alert gate step and its pure verdict: armed on entry, holds while an alert that matters fires or nobody answers."""

from __future__ import annotations

from pathlib import Path

import pytest
import structlog

from agent.clients.alerts import AlertSourceUnavailable, FiringAlerts
from agent.core.alert_gate import Override, blocking, describe_alert
from agent.core.errors import StepError, StepPending
from agent.core.model import Intent, Mode, Role
from agent.core.selectors import parse_selector
from agent.daemon.local.statefile import StateFile
from agent.daemon.steps.alert_gate import AlertGateStep
from agent.daemon.steps.base import StepContext
from tests.fakes import FakeGateway

SELECTOR = parse_selector('severity="critical", env="prod"')
SILENCED = parse_selector('alertname=~"WorkerStopped|JobStale", env="prod"')
LAG = {"alertname": "ReplicaLagging", "severity": "critical", "env": "prod", "instance": "sql-b"}


class Alerts(FiringAlerts):
    def __init__(self) -> None:
        super().__init__("prometheus", "http://127.0.0.1:9")
        self.now: list[dict[str, str]] | None = []

    def firing(self) -> list[dict[str, str]]:
        if self.now is None:
            raise AlertSourceUnavailable("Prometheus at http://127.0.0.1:9 unreachable: ConnectionError")
        return self.now


def test_what_holds_traffic() -> None:
    stopped = {"alertname": "WorkerStopped", "severity": "critical", "env": "prod"}
    warning = {**LAG, "severity": "warning"}
    elsewhere = {**LAG, "env": "mock"}
    assert blocking([LAG, stopped, warning, elsewhere], SELECTOR, SILENCED) == ['ReplicaLagging{instance="sql-b"}']
    assert blocking([stopped], SELECTOR, ()) == ["WorkerStopped"], "without a window silence nothing is left out"
    assert describe_alert({"severity": "critical"}) == "unnamed alert"
    assert Override(40, "r", "alice", "t").covers(40) and not Override(39, "r", "alice", "t").covers(40)


def test_the_step_arms_on_entry_holds_on_alerts_and_no_answer_and_opens_on_an_override(tmp_path: Path) -> None:
    gateway, alerts = FakeGateway(), Alerts()
    step = AlertGateStep(Role.EDGE, alerts, SELECTOR, SILENCED, gateway, "maintenance/prod/alert-gate/override", recheck=0.5)
    memory = StateFile(tmp_path / "state.json")
    window = StepContext(intent=Intent(Mode.MAINTENANCE, 40), node="edge-1", memory=memory, log=structlog.get_logger())
    leaving = StepContext(intent=Intent(Mode.ACTIVE, 45), node="edge-1", memory=memory, log=structlog.get_logger())
    assert step.check(leaving, Mode.ACTIVE), "never armed: nothing to ask (a settled box, a new intent of the same mode)"
    assert not step.check(window, Mode.MAINTENANCE)
    step.apply(window)
    assert step.check(window, Mode.MAINTENANCE) and not step.check(leaving, Mode.ACTIVE)
    alerts.now = [LAG]
    with pytest.raises(StepPending, match=r"ReplicaLagging\{instance=\"sql-b\"\}") as held:
        step.revert(leaving)
    assert held.value.recheck_after == 0.5
    alerts.now = None
    with pytest.raises(StepError, match="cannot tell whether alerts fire"):
        step.revert(leaving)
    gateway.put_key("maintenance/prod/alert-gate/override", Override(39, "last week's", "bob", "t").to_json())
    with pytest.raises(StepError):
        step.revert(leaving)
    gateway.put_key("maintenance/prod/alert-gate/override", Override(45, "Prometheus down too", "alice", "t").to_json())
    step.revert(leaving)
    assert step.check(leaving, Mode.ACTIVE), "overridden for this window: disarmed"
    step.apply(window)
    alerts.now = []
    step.revert(leaving)
    assert step.check(leaving, Mode.ACTIVE)
