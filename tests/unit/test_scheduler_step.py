"""SchedulerJobsStep: hold, drain within the timeout, then stop or keep waiting; restart survives."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest

from agent.core.errors import StepPending
from agent.core.model import Mode
from agent.daemon.steps.jobs import SchedulerJobsStep
from tests.fakes import FakeBackend, FakeService
from tests.fixtures.steps import converge, step_context


class Clock:
    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now


def _jobs() -> dict[str, FakeService]:
    return {"report": FakeService(running_job=True), "cleanup": FakeService(), "off": FakeService(active=False, held=True)}


def _step(backend: FakeBackend, clock: Clock, action: Literal["stop", "wait"] = "stop") -> SchedulerJobsStep:
    return SchedulerJobsStep(backend, ["report", "cleanup", "off"], drain_timeout=60, on_drain_timeout=action, drain_poll=5, clock=clock)


def test_a_running_job_may_finish_within_the_drain_timeout(tmp_path: Path) -> None:
    jobs, clock = _jobs(), Clock()
    backend = FakeBackend(jobs)
    step = _step(backend, clock)
    with pytest.raises(StepPending) as pending:
        step.apply(step_context(tmp_path / "s.json"))
    assert pending.value.blocked_on == "draining report (report-run) (60s left of 60s)"
    assert pending.value.recheck_after == 5
    assert jobs["report"].held and jobs["cleanup"].held
    assert not step.check(step_context(tmp_path / "s.json"), Mode.MAINTENANCE)

    clock.now += 30
    jobs["report"].running_job = False  # finished on its own
    converge(step, step_context(tmp_path / "s.json"), Mode.MAINTENANCE)
    assert "stop-run report" not in backend.calls
    assert step.check(step_context(tmp_path / "s.json"), Mode.MAINTENANCE)


def test_after_the_drain_timeout_stop_stops_the_run(tmp_path: Path) -> None:
    jobs, clock = _jobs(), Clock()
    backend = FakeBackend(jobs)
    with pytest.raises(StepPending):
        _step(backend, clock).apply(step_context(tmp_path / "s.json"))
    clock.now += 61
    # A restarted agent keeps the drain's start: no fresh timeout.
    converge(_step(FakeBackend(jobs), clock), step_context(tmp_path / "s.json"), Mode.MAINTENANCE)
    assert not jobs["report"].running_job


def test_after_the_drain_timeout_wait_keeps_reporting(tmp_path: Path) -> None:
    jobs, clock = _jobs(), Clock()
    step = _step(FakeBackend(jobs), clock, action="wait")
    with pytest.raises(StepPending):
        step.apply(step_context(tmp_path / "s.json"))
    clock.now += 100
    with pytest.raises(StepPending) as pending:
        step.apply(step_context(tmp_path / "s.json"))
    assert pending.value.blocked_on.startswith("draining report (report-run): overdue by 40s")
    assert jobs["report"].running_job


def test_leaving_releases_only_what_the_window_held(tmp_path: Path) -> None:
    jobs, clock = _jobs(), Clock()
    jobs["report"].running_job = False
    step = _step(FakeBackend(jobs), clock)
    converge(step, step_context(tmp_path / "s.json"), Mode.MAINTENANCE)
    converge(step, step_context(tmp_path / "s.json", Mode.ACTIVE, 43), Mode.ACTIVE)
    assert not jobs["report"].held and not jobs["cleanup"].held and jobs["report"].active
    assert jobs["off"].held and not jobs["off"].active, "held before the window: stays held"
    assert step_context(tmp_path / "s.json").notes(step) == {}
