"""The command backend and the steps with real shell commands (state kept in marker files)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config.roles import ServiceCommands
from agent.core.errors import StepError, StepPending
from agent.core.model import Mode
from agent.daemon.backends.base import BackendError
from agent.daemon.backends.command import CommandBackend
from agent.daemon.steps.jobs import SchedulerJobsStep
from agent.daemon.steps.services import WorkerServicesStep
from tests.fixtures.steps import converge, step_context


def _marker_commands(folder: Path, name: str, **extra: str) -> ServiceCommands:
    flag = folder / f"{name}.running"
    return ServiceCommands(stop=f"rm -f {flag}", start=f"touch {flag}", status=f"test -f {flag}", **extra)


def test_enter_and_exit_with_real_commands(tmp_path: Path) -> None:
    (tmp_path / "web-a.running").touch()
    commands = {n: _marker_commands(tmp_path, n) for n in ("web-a", "web-b")}
    step = WorkerServicesStep(CommandBackend(commands, timeout=5), ["web-a", "web-b"])
    converge(step, step_context(tmp_path / "s.json"), Mode.MAINTENANCE)
    assert not (tmp_path / "web-a.running").exists()
    converge(step, step_context(tmp_path / "s.json", Mode.ACTIVE, 43), Mode.ACTIVE)
    assert (tmp_path / "web-a.running").exists()
    assert not (tmp_path / "web-b.running").exists(), "was stopped before the window"


def test_a_failing_command_carries_its_exit_code_and_output(tmp_path: Path) -> None:
    (tmp_path / "svc.running").touch()
    commands = {"svc": ServiceCommands(stop="echo 'sc stop: Access is denied' >&2; exit 7", start="true", status=f"test -f {tmp_path}/svc.running")}
    step = WorkerServicesStep(CommandBackend(commands, timeout=5), ["svc"])
    with pytest.raises(StepError) as failed:
        step.apply(step_context(tmp_path / "s.json"))
    assert failed.value.detail == "stop svc: `echo 'sc stop: Access is denied' >&2; exit 7` exited with 7: sc stop: Access is denied"
    assert not step.check(step_context(tmp_path / "s.json"), Mode.MAINTENANCE)


def test_status_with_an_unexpected_exit_code_is_an_error(tmp_path: Path) -> None:
    backend = CommandBackend({"svc": ServiceCommands(stop="true", start="true", status="echo unknown; exit 4")}, timeout=5)
    with pytest.raises(BackendError, match=r"status of svc: `echo unknown; exit 4` exited with 4: unknown"):
        backend.run_state("svc")


def test_a_command_that_hangs_is_killed_with_its_children(tmp_path: Path) -> None:
    backend = CommandBackend({"svc": ServiceCommands(stop="sleep 30 | cat", start="true", status="true")}, timeout=0.5)
    with pytest.raises(BackendError, match=r"`sleep 30 \| cat` timed out after 0.5s"):
        backend.stop("svc")


def test_long_output_is_truncated_keeping_head_and_tail(tmp_path: Path) -> None:
    noisy = "python3 -c \"print('first line'); print('x' * 20000); print('last line')\"; exit 1"
    backend = CommandBackend({"svc": ServiceCommands(stop=noisy, start="true", status="true")}, timeout=5)
    with pytest.raises(BackendError) as failed:
        backend.stop("svc")
    assert len(failed.value.detail) < 2000
    assert "first line" in failed.value.detail and "last line" in failed.value.detail and "characters cut" in failed.value.detail


def test_command_jobs_drain_until_the_run_finishes(tmp_path: Path) -> None:
    busy = tmp_path / "export.busy"
    busy.touch()
    (tmp_path / "export.running").touch()
    commands = {"export": _marker_commands(tmp_path, "export", running=f"test -f {busy}", stop_running=f"rm -f {busy}")}
    step = SchedulerJobsStep(CommandBackend(commands, timeout=5), ["export"], drain_timeout=300, on_drain_timeout="stop")
    with pytest.raises(StepPending, match="draining export"):
        step.apply(step_context(tmp_path / "s.json"))
    assert not (tmp_path / "export.running").exists(), "disabled at once, while the run drains"
    busy.unlink()  # the run finishes on its own
    converge(step, step_context(tmp_path / "s.json"), Mode.MAINTENANCE)
    converge(step, step_context(tmp_path / "s.json", Mode.ACTIVE, 43), Mode.ACTIVE)
    assert (tmp_path / "export.running").exists()
