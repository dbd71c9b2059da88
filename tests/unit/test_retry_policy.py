"""Typed errors carry the retry policy: a temporary error's delay is honoured, a permanent one is not retried like a timeout."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.core.errors import (
    ConsulPermissionDenied,
    ConsulUnavailable,
    MaintenanceAgentError,
    PermanentError,
    StepError,
    StepRefused,
    retry_delay,
    step_failure,
)
from agent.core.model import Intent, Mode, Role, State
from agent.core.settings import BackoffPolicy
from agent.daemon.local.statefile import StateFile
from agent.daemon.steps.base import Step, StepContext
from agent.daemon.steps.consul_maint import NodeMaintenanceStep
from tests.fakes import make_reconciler, read


@pytest.mark.parametrize(("error", "backoff", "expected"), [
    (ConsulPermissionDenied("403", rule='key "x"'), 1.0, 30.0),   # permanent: the slow rate, not the backoff
    (PermanentError("refused"), 40.0, 40.0),
    (ConsulUnavailable("no leader", delay=5.0), 1.0, 5.0),         # the hint is a floor
    (ConsulUnavailable("no leader", delay=0.5), 2.0, 2.0),         # the backoff may stretch it
    (StepError("s", "timed out"), 1.5, 1.5),
    (MaintenanceAgentError("untyped"), 1.5, 1.5),
    (None, 1.5, 1.5),
])
def test_retry_delay(error: BaseException | None, backoff: float, expected: float) -> None:
    assert retry_delay(error, backoff, slow=30.0) == expected


class RaisingStep(Step):
    def __init__(self, error: MaintenanceAgentError):
        self.name, self.role, self.error, self.calls = "raising", Role.WEB, error, 0

    def check(self, ctx: StepContext, target: Mode) -> bool:
        return False

    def apply(self, ctx: StepContext) -> None:
        self.calls += 1
        raise self.error

    def revert(self, ctx: StepContext) -> None:
        raise AssertionError("not reached")


def _failing(tmp_path: Path, error: MaintenanceAgentError, retry_max: float):
    step = RaisingStep(error)
    rec, published = make_reconciler(tmp_path, [Role.WEB], {Role.WEB: [step]}, retry=BackoffPolicy(base=1.0, cap=retry_max))
    rec.on_watch_event(read(b"maintenance", 4))
    return rec, step, published


def test_a_permanent_error_waits_for_the_slow_rate_and_is_reported(tmp_path: Path) -> None:
    rec, step, published = _failing(tmp_path, ConsulPermissionDenied("Consul refused node maintenance (403)", rule='node "n" { policy = "write" }'),
                                    retry_max=20.0)
    wait = rec.tick()
    assert wait >= 20.0, "a 403 must not be retried like a timeout"
    assert rec.tick() > 19.0 and step.calls == 1, "no retry before the slow rate"
    assert published[-1].error and "needs ACL rule" in published[-1].error
    assert rec.state is State.ENTERING
    rec.on_watch_event(read(b"maintenance", 5))  # a new intent retries at once
    rec.tick()
    assert step.calls == 2


def test_a_temporary_errors_delay_is_honoured(tmp_path: Path) -> None:
    rec, step, _ = _failing(tmp_path, ConsulUnavailable("no cluster leader", delay=7.0), retry_max=0.05)
    assert rec.tick() >= 7.0
    assert rec.tick() > 6.0 and step.calls == 1


class RefusingGateway:
    """The two calls the node-maintenance step makes; the write is refused like a token without ``node`` write."""

    def node_maintenance(self) -> tuple[bool, str]:
        return False, ""

    def set_node_maintenance(self, enable: bool, reason: str) -> None:
        raise ConsulPermissionDenied("Consul refused node maintenance (403 Permission denied)", rule='node "web-1" { policy = "write" }')


def test_a_step_keeps_the_refusal_of_what_it_called(tmp_path: Path) -> None:
    step = NodeMaintenanceStep(RefusingGateway())  # type: ignore[arg-type]
    rec, published = make_reconciler(tmp_path, [Role.WEB], {Role.WEB: [step]}, retry=BackoffPolicy(base=1.0, cap=25.0))
    rec.on_watch_event(read(b"maintenance", 4))
    assert rec.tick() >= 25.0, "a refused step is not retried like a timeout"
    assert published[-1].error and "needs ACL rule: node" in published[-1].error


@pytest.mark.parametrize(("cause", "kind", "delay"), [
    (ConsulPermissionDenied("403"), StepRefused, None),
    (ConsulUnavailable("no leader", delay=3.0), StepError, 3.0),
    (ValueError("x"), StepError, 0.0),
])
def test_step_failure_keeps_the_retry_policy(cause: BaseException, kind: type, delay: float | None) -> None:
    error = step_failure("s", "detail", cause)
    assert type(error) is kind and str(error) == "s: detail"
    if delay is not None:
        assert error.delay == delay  # type: ignore[union-attr]


class CountingGateway:
    """Node maintenance as the local Consul agent would report it, counting the reads."""

    def __init__(self, on: bool, reason: str = ""):
        self.on, self.reason, self.reads = on, reason, 0

    def node_maintenance(self) -> tuple[bool, str]:
        self.reads += 1
        return self.on, self.reason


def test_node_maintenance_drift_is_read_only_while_in_maintenance(tmp_path: Path) -> None:
    ctx = StepContext(intent=Intent(Mode.MAINTENANCE, index=3), node="web-1", memory=StateFile(tmp_path / "s"))
    switched_off = CountingGateway(on=False)
    in_window = NodeMaintenanceStep(switched_off)  # type: ignore[arg-type]
    assert in_window.drift(ctx, Mode.MAINTENANCE) != [], "disabled by hand mid-window: drift"
    assert switched_off.reads == 1
    settled = CountingGateway(on=False)
    after_window = NodeMaintenanceStep(settled)  # type: ignore[arg-type]
    for _ in range(5):
        assert after_window.drift(ctx, Mode.ACTIVE) == []
    assert settled.reads == 1, "an idle, active web box asks once after it starts, then nothing"
    left_on = CountingGateway(on=True, reason="maintenance-agent: SQL patch (intent 3)")  # a state file lost mid-window
    after_restart = NodeMaintenanceStep(left_on)  # type: ignore[arg-type]
    assert after_restart.drift(ctx, Mode.ACTIVE) != [] and after_restart.drift(ctx, Mode.ACTIVE) != []
    assert left_on.reads == 2, "ours left on: looked at again until repaired"
