"""The systemd backend and the worker/scheduler steps through a recording stand-in ``systemctl`` (fast tests only).

These assert the exact command lines the agent runs, and failures and hangs
that are hard to provoke in a real systemd. The same procedure under the real
systemd, D-Bus and polkit, installed as an operator installs it, is
``tests/integration/test_real_box_*.py``.
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
    backend = SystemdBackend(systemd.holds_dir)
    assert backend.expand(["billpay-worker@*.service", "ledger-sync.service"]) == [
        "billpay-worker@1.service", "billpay-worker@2.service", "billpay-worker@3.service", "ledger-sync.service",
    ]
    assert systemd.calls() == [
        "list-units --all --plain --no-legend billpay-worker@*.service",
        "list-unit-files --plain --no-legend billpay-worker@*.service",
        "list-units --all --plain --no-legend ledger-sync.service",
        "list-unit-files --plain --no-legend ledger-sync.service",
    ]


def test_enter_holds_and_stops_exit_releases_and_restores_exactly_what_was_there(systemd: FakeSystemd, tmp_path: Path) -> None:
    step = WorkerServicesStep(SystemdBackend(systemd.holds_dir), ["billpay-worker@*.service", "ledger-sync.service"])
    converge(step, step_context(tmp_path / "state.json"), Mode.MAINTENANCE)
    changes = [c for c in systemd.calls() if c.split()[0] in ("stop", "start", "enable", "disable")]
    assert changes == ["stop billpay-worker@1.service", "stop billpay-worker@2.service", "stop ledger-sync.service"]
    assert systemd.held() == {"billpay-worker@1.service", "billpay-worker@2.service", "billpay-worker@3.service", "ledger-sync.service"}, \
        "every unit is held, also one that was off (it would start at boot otherwise)"
    assert "show --property=DropInPaths --value billpay-worker@3.service" in systemd.calls(), "a hold is checked to be effective"
    assert all(call.startswith("--no-ask-password ") for call in systemd.raw_calls())
    units = systemd.units()
    assert {units[u]["active"] for u in units if u != "other.service"} == {"inactive"}

    systemd.forget_calls()
    converge(step, step_context(tmp_path / "state.json", Mode.ACTIVE, 43), Mode.ACTIVE)
    changes = [c for c in systemd.calls() if c.split()[0] in ("stop", "start", "enable", "disable")]
    assert changes == ["start ledger-sync.service", "start billpay-worker@2.service", "start billpay-worker@1.service"]
    assert systemd.held() == set()
    after = systemd.units()
    assert after["billpay-worker@3.service"] == _unit("inactive", "disabled"), "stopped before the window: stays stopped"
    assert after["ledger-sync.service"] == _unit("active", "disabled"), "its enabled state is never touched"
    assert after["billpay-worker@1.service"] == _unit(), "its enabled state is never touched"


def test_a_unit_without_the_hold_drop_in_is_not_stopped_unheld(systemd: FakeSystemd, tmp_path: Path) -> None:
    units = systemd.units()
    units["ledger-sync.service"]["hold_drop_in"] = False
    systemd.set_units(units)
    step = WorkerServicesStep(SystemdBackend(systemd.holds_dir), ["ledger-sync.service"])
    with pytest.raises(StepError) as failed:
        step.apply(step_context(tmp_path / "s.json"))
    assert "cannot hold ledger-sync.service: systemd has no maintenance-agent-hold.conf drop-in loaded" in failed.value.detail
    assert "maintenance-agent install-files" in failed.value.detail
    assert "stop ledger-sync.service" not in systemd.calls() and systemd.held() == set()


def test_a_drop_in_for_another_state_dir_is_refused(systemd: FakeSystemd, tmp_path: Path) -> None:
    step = WorkerServicesStep(SystemdBackend(tmp_path / "elsewhere" / "holds"), ["ledger-sync.service"])
    with pytest.raises(StepError, match=r"does not say `ConditionPathExists=!.*/elsewhere/holds/systemd/%n`"):
        step.apply(step_context(tmp_path / "s.json"))
    assert "stop ledger-sync.service" not in systemd.calls()


def test_a_refusal_by_polkit_names_the_action_the_verb_and_the_unit(systemd: FakeSystemd, tmp_path: Path) -> None:
    units = systemd.units()
    units["ledger-sync.service"]["fail"] = {"stop": "Failed to stop ledger-sync.service: Access denied"}
    systemd.set_units(units)
    step = WorkerServicesStep(SystemdBackend(systemd.holds_dir), ["ledger-sync.service"])
    with pytest.raises(StepError) as failed:
        step.apply(step_context(tmp_path / "s.json"))
    assert failed.value.detail.startswith(
        "polkit refused org.freedesktop.systemd1.manage-units, verb stop, unit ledger-sync.service, to this agent's user")


def test_a_unit_that_does_not_exist_is_a_step_error(systemd: FakeSystemd, tmp_path: Path) -> None:
    step = WorkerServicesStep(SystemdBackend(systemd.holds_dir), ["billpay-wrker.service"])
    with pytest.raises(StepError) as failed:
        step.apply(step_context(tmp_path / "s.json"))
    assert "unit billpay-wrker.service does not exist" in failed.value.detail


def test_a_failing_stop_carries_the_command_and_its_output(systemd: FakeSystemd, tmp_path: Path) -> None:
    units = systemd.units()
    units["ledger-sync.service"]["fail"] = {"stop": "Job for ledger-sync.service canceled."}
    systemd.set_units(units)
    step = WorkerServicesStep(SystemdBackend(systemd.holds_dir), ["ledger-sync.service"])
    with pytest.raises(StepError) as failed:
        step.apply(step_context(tmp_path / "s.json"))
    assert failed.value.detail == "`systemctl --no-ask-password stop ledger-sync.service` exited with 1: Job for ledger-sync.service canceled."
    assert not step.check(step_context(tmp_path / "s.json"), Mode.MAINTENANCE)


def test_a_stop_that_hangs_is_killed_at_the_timeout(systemd: FakeSystemd, tmp_path: Path) -> None:
    units = systemd.units()
    units["ledger-sync.service"].update(fail={"stop": "never"}, hang=30)
    systemd.set_units(units)
    step = WorkerServicesStep(SystemdBackend(systemd.holds_dir, timeout=1), ["ledger-sync.service"])
    with pytest.raises(StepError, match=r"`systemctl --no-ask-password stop ledger-sync.service` timed out after 1s"):
        step.apply(step_context(tmp_path / "s.json"))


def test_timer_jobs_drain_then_stop_the_running_service(systemd: FakeSystemd, tmp_path: Path) -> None:
    systemd.set_units({
        "billpay-report.timer": _unit(triggers="billpay-report.service"),
        "billpay-report.service": _unit("active", "static"),
        "cleanup.timer": _unit("inactive", "disabled", triggers="cleanup.service"),
        "cleanup.service": _unit("inactive", "static"),
    })
    now = [1000.0]
    step = SchedulerJobsStep(SystemdBackend(systemd.holds_dir), ["billpay-report.timer", "cleanup.timer"], drain_timeout=60,
                             on_drain_timeout="stop", clock=lambda: now[0])
    with pytest.raises(StepPending) as pending:
        step.apply(step_context(tmp_path / "s.json"))
    assert pending.value.blocked_on.startswith("draining billpay-report.timer (billpay-report.service)")
    assert "stop billpay-report.timer" in systemd.calls() and systemd.held() == {"billpay-report.timer", "cleanup.timer"}
    assert "show --property=Triggers --value billpay-report.timer" in systemd.calls()
    assert "stop cleanup.timer" not in systemd.calls()

    now[0] += 61
    systemd.forget_calls()
    step.apply(step_context(tmp_path / "s.json"))
    assert "stop billpay-report.service" in systemd.calls()
    assert step.check(step_context(tmp_path / "s.json"), Mode.MAINTENANCE)

    systemd.forget_calls()
    converge(step, step_context(tmp_path / "s.json", Mode.ACTIVE, 43), Mode.ACTIVE)
    changes = [c for c in systemd.calls() if c.split()[0] in ("stop", "start", "enable", "disable")]
    assert changes == ["start billpay-report.timer"] and systemd.held() == set()
    assert systemd.units()["cleanup.timer"] == _unit("inactive", "disabled", triggers="cleanup.service")


def test_unexpected_run_state_answer_is_an_error(systemd: FakeSystemd) -> None:
    units = systemd.units()
    units["other.service"]["active"] = "bogus"
    systemd.set_units(units)
    with pytest.raises(BackendError, match="unexpected state of other.service"):
        SystemdBackend(systemd.holds_dir).run_state("other.service")
