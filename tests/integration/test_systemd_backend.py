"""The systemd backend and the worker/scheduler steps through a stand-in ``systemctl``.

systemd is not PID 1 on the machines that run these tests (containers, CI), so
a real ``systemctl`` cannot be used. Instead each test writes a small
``systemctl`` script into a temp dir, puts it first on PATH, and the script
appends every call line to ``calls.log`` and keeps unit state in ``units.json``.
The tests assert the exact command lines the agent runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.core.errors import StepError, StepPending
from agent.core.model import Mode
from agent.daemon.backends.base import BackendError
from agent.daemon.backends.systemd import SystemdBackend
from agent.daemon.steps.jobs import SchedulerJobsStep
from agent.daemon.steps.services import WorkerServicesStep
from tests.fixtures.steps import converge, step_context
from tests.fixtures.systemd import FakeSystemd
from tests.fixtures.systemd import unit_state as _unit


@pytest.fixture
def systemd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeSystemd:
    return FakeSystemd.on_path(tmp_path, monkeypatch, {
        "billpay-worker@1.service": _unit(),
        "billpay-worker@2.service": _unit(),
        "billpay-worker@3.service": _unit("inactive", "disabled"),
        "billpay-worker@.service": _unit("inactive", "indirect"),
        "ledger-sync.service": _unit("active", "disabled"),
        "other.service": _unit(),
    })


def test_glob_expansion_uses_list_units_and_list_unit_files(systemd: FakeSystemd) -> None:
    backend = SystemdBackend()
    assert backend.expand(["billpay-worker@*.service", "ledger-sync.service"]) == [
        "billpay-worker@1.service", "billpay-worker@2.service", "billpay-worker@3.service", "ledger-sync.service",
    ]
    assert systemd.calls() == [
        "list-units --all --plain --no-legend billpay-worker@*.service",
        "list-unit-files --plain --no-legend billpay-worker@*.service",
        "list-units --all --plain --no-legend ledger-sync.service",
        "list-unit-files --plain --no-legend ledger-sync.service",
    ]


def test_enter_stops_and_disables_exit_restores_exactly_what_was_there(systemd: FakeSystemd, tmp_path: Path) -> None:
    step = WorkerServicesStep(SystemdBackend(), ["billpay-worker@*.service", "ledger-sync.service"])
    converge(step, step_context(tmp_path / "state.json"), Mode.MAINTENANCE)
    changes = [c for c in systemd.calls() if c.split()[0] in ("stop", "start", "enable", "disable")]
    assert changes == [
        "disable billpay-worker@1.service", "stop billpay-worker@1.service",
        "disable billpay-worker@2.service", "stop billpay-worker@2.service",
        "stop ledger-sync.service",
    ]
    assert "is-active billpay-worker@3.service" in systemd.calls()
    assert "is-enabled billpay-worker@3.service" in systemd.calls()
    units = systemd.units()
    assert {units[u]["active"] for u in units if u != "other.service"} == {"inactive"}

    systemd.forget_calls()
    converge(step, step_context(tmp_path / "state.json", Mode.ACTIVE, 43), Mode.ACTIVE)
    changes = [c for c in systemd.calls() if c.split()[0] in ("stop", "start", "enable", "disable")]
    assert changes == [
        "start ledger-sync.service",
        "enable billpay-worker@2.service", "start billpay-worker@2.service",
        "enable billpay-worker@1.service", "start billpay-worker@1.service",
    ]
    after = systemd.units()
    assert after["billpay-worker@3.service"] == _unit("inactive", "disabled"), "stopped before the window: stays stopped"
    assert after["ledger-sync.service"] == _unit("active", "disabled"), "was not enabled: is not enabled afterwards"


def test_a_unit_that_does_not_exist_is_a_step_error(systemd: FakeSystemd, tmp_path: Path) -> None:
    step = WorkerServicesStep(SystemdBackend(), ["billpay-wrker.service"])
    with pytest.raises(StepError) as failed:
        step.apply(step_context(tmp_path / "s.json"))
    assert "unit billpay-wrker.service does not exist" in failed.value.detail


def test_a_failing_stop_carries_the_command_and_its_output(systemd: FakeSystemd, tmp_path: Path) -> None:
    units = systemd.units()
    units["ledger-sync.service"]["fail"] = {"stop": "Job for ledger-sync.service canceled."}
    systemd.set_units(units)
    step = WorkerServicesStep(SystemdBackend(), ["ledger-sync.service"])
    with pytest.raises(StepError) as failed:
        step.apply(step_context(tmp_path / "s.json"))
    assert failed.value.detail == "`systemctl stop ledger-sync.service` exited with 1: Job for ledger-sync.service canceled."
    assert not step.check(step_context(tmp_path / "s.json"), Mode.MAINTENANCE)


def test_a_stop_that_hangs_is_killed_at_the_timeout(systemd: FakeSystemd, tmp_path: Path) -> None:
    units = systemd.units()
    units["ledger-sync.service"].update(fail={"stop": "never"}, hang=30)
    systemd.set_units(units)
    step = WorkerServicesStep(SystemdBackend(timeout=1), ["ledger-sync.service"])
    with pytest.raises(StepError, match=r"`systemctl stop ledger-sync.service` timed out after 1s"):
        step.apply(step_context(tmp_path / "s.json"))


def test_timer_jobs_drain_then_stop_the_running_service(systemd: FakeSystemd, tmp_path: Path) -> None:
    systemd.set_units({
        "billpay-report.timer": _unit(triggers="billpay-report.service"),
        "billpay-report.service": _unit("active", "static"),
        "cleanup.timer": _unit("inactive", "disabled", triggers="cleanup.service"),
        "cleanup.service": _unit("inactive", "static"),
    })
    now = [1000.0]
    step = SchedulerJobsStep(SystemdBackend(), ["*.timer"], drain_timeout=60, on_drain_timeout="stop", clock=lambda: now[0])
    with pytest.raises(StepPending) as pending:
        step.apply(step_context(tmp_path / "s.json"))
    assert pending.value.blocked_on.startswith("draining billpay-report.timer (billpay-report.service)")
    assert "disable billpay-report.timer" in systemd.calls() and "stop billpay-report.timer" in systemd.calls()
    assert "show --property=Triggers --value billpay-report.timer" in systemd.calls()
    assert "disable cleanup.timer" not in systemd.calls()

    now[0] += 61
    systemd.forget_calls()
    step.apply(step_context(tmp_path / "s.json"))
    assert "stop billpay-report.service" in systemd.calls()
    assert step.check(step_context(tmp_path / "s.json"), Mode.MAINTENANCE)

    systemd.forget_calls()
    converge(step, step_context(tmp_path / "s.json", Mode.ACTIVE, 43), Mode.ACTIVE)
    changes = [c for c in systemd.calls() if c.split()[0] in ("stop", "start", "enable", "disable")]
    assert changes == ["enable billpay-report.timer", "start billpay-report.timer"]
    assert systemd.units()["cleanup.timer"] == _unit("inactive", "disabled", triggers="cleanup.service")


def test_unexpected_run_state_answer_is_an_error(systemd: FakeSystemd) -> None:
    units = systemd.units()
    units["other.service"]["active"] = "bogus"
    systemd.set_units(units)
    with pytest.raises(BackendError, match="unexpected state of other.service"):
        SystemdBackend().run_state("other.service")
