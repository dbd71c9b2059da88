"""WorkerServicesStep's logic with an in-memory backend: snapshot once, crash, restart, converge."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.core.errors import StepError, StepPending
from agent.core.model import Mode
from agent.daemon.backends.base import RunState
from agent.daemon.steps import quiesce
from agent.daemon.steps.services import WorkerServicesStep
from tests.fakes import FakeBackend, FakeService
from tests.fixtures.steps import converge, step_context

NAMES = ["a", "b", "c", "d"]


def _box() -> dict[str, FakeService]:
    return {
        "a": FakeService(), "b": FakeService(), "c": FakeService(),
        "d": FakeService(active=False, held=True),
    }


def _running(services: dict[str, FakeService]) -> set[str]:
    return {n for n, s in services.items() if s.active}


def test_check_reflects_reality_not_notes(tmp_path: Path) -> None:
    services = _box()
    step = WorkerServicesStep(FakeBackend(services), NAMES)
    ctx = step_context(tmp_path / "s.json")
    converge(step, ctx, Mode.MAINTENANCE)
    services["b"].active = True  # someone started it by hand
    assert not step.check(ctx, Mode.MAINTENANCE)
    services["b"].active = False
    assert step.check(ctx, Mode.MAINTENANCE)
    assert not step.check(ctx, Mode.ACTIVE)


def test_crash_midway_and_a_restarted_agent_restores_the_same_set_as_without_crash(tmp_path: Path) -> None:
    clean = _box()
    step = WorkerServicesStep(FakeBackend(clean), NAMES)
    converge(step, step_context(tmp_path / "clean.json"), Mode.MAINTENANCE)
    converge(step, step_context(tmp_path / "clean.json", Mode.ACTIVE, 43), Mode.ACTIVE)

    crashed = _box()
    failing = WorkerServicesStep(FakeBackend(crashed, fail_stop={"b"}), NAMES)
    with pytest.raises(StepError, match="stop b: refused"):
        failing.apply(step_context(tmp_path / "crash.json"))
    assert _running(crashed) == {"b", "c"}

    restarted = WorkerServicesStep(FakeBackend(crashed), NAMES)
    converge(restarted, step_context(tmp_path / "crash.json"), Mode.MAINTENANCE)
    assert _running(crashed) == set()
    converge(restarted, step_context(tmp_path / "crash.json", Mode.ACTIVE, 43), Mode.ACTIVE)
    assert _running(crashed) == _running(clean) == {"a", "b", "c"}
    assert crashed == clean


def test_snapshot_is_taken_once_per_window(tmp_path: Path) -> None:
    services = _box()
    step = WorkerServicesStep(FakeBackend(services, fail_stop={"c"}), NAMES)
    ctx = step_context(tmp_path / "s.json")
    with pytest.raises(StepError):
        step.apply(ctx)
    first = ctx.notes(step)["snapshot"]
    with pytest.raises(StepError):
        step.apply(step_context(tmp_path / "s.json"))
    assert step_context(tmp_path / "s.json").notes(step)["snapshot"] == first
    assert {r["name"] for r in first if r["active"]} == {"a", "b", "c"}


def test_revert_that_does_not_hold_keeps_the_snapshot(tmp_path: Path) -> None:
    services = _box()
    backend = FakeBackend(services)
    step = WorkerServicesStep(backend, NAMES)
    converge(step, step_context(tmp_path / "s.json"), Mode.MAINTENANCE)
    backend.start = lambda name: backend.calls.append(f"start {name}")  # type: ignore[method-assign]
    with pytest.raises(StepError, match=r"not back after starting \(fake\): a \(not running\)"):
        step.revert(step_context(tmp_path / "s.json", Mode.ACTIVE, 43))
    assert step_context(tmp_path / "s.json").notes(step)["snapshot"]


def test_without_a_snapshot_leaving_has_nothing_to_restore(tmp_path: Path) -> None:
    services = _box()
    backend = FakeBackend(services)
    step = WorkerServicesStep(backend, NAMES)
    ctx = step_context(tmp_path / "s.json", Mode.ACTIVE)
    assert step.check(ctx, Mode.ACTIVE)
    step.revert(ctx)
    assert backend.calls == [], "the step's own backend was asked to start, stop, enable or disable nothing"
    assert _running(services) == {"a", "b", "c"} and not services["d"].active


def test_a_window_abandoned_midway_leaves_no_snapshot_for_the_next_one(tmp_path: Path) -> None:
    """Entering failed after the snapshot, the operator went back to active; weeks later
    `c` is retired. The next window must snapshot afresh, not restart `c`."""
    services = _box()
    failing = WorkerServicesStep(FakeBackend(services, fail_stop={"a"}), NAMES)
    with pytest.raises(StepError):
        failing.apply(step_context(tmp_path / "s.json"))
    step = WorkerServicesStep(FakeBackend(services), NAMES)
    back = step_context(tmp_path / "s.json", Mode.ACTIVE, 43)
    assert not step.check(back, Mode.ACTIVE)  # the abandoned snapshot is still to be consumed
    converge(step, back, Mode.ACTIVE)
    assert _running(services) == {"a", "b", "c"} and step.check(back, Mode.ACTIVE)

    services["c"].active, services["c"].held = False, True  # retired between windows
    converge(step, step_context(tmp_path / "s.json", Mode.MAINTENANCE, 50), Mode.MAINTENANCE)
    converge(step, step_context(tmp_path / "s.json", Mode.ACTIVE, 51), Mode.ACTIVE)
    assert _running(services) == {"a", "b"}


@pytest.mark.parametrize("phase", [RunState.STOPPING, RunState.STARTING])
def test_a_restore_is_done_only_once_every_service_is_observed_running(tmp_path: Path, phase: RunState) -> None:
    services = _box()
    step = WorkerServicesStep(FakeBackend(services), NAMES)
    converge(step, step_context(tmp_path / "s.json"), Mode.MAINTENANCE)
    leaving = step_context(tmp_path / "s.json", Mode.ACTIVE, 43)
    services["b"].phase = phase  # still stopping (killed mid-stop) or only starting
    with pytest.raises(StepPending, match=f"b \\({phase.value}\\)"):
        step.revert(leaving)
    assert not step.check(leaving, Mode.ACTIVE), "the restore list is kept while a service is not yet running"
    assert quiesce.snapshot_from_notes(leaving.notes(step)) is not None
    services["b"].phase = None
    converge(step, leaving, Mode.ACTIVE)
    assert _running(services) == {"a", "b", "c"}


def test_a_service_stopping_blocks_entering_without_a_second_stop(tmp_path: Path) -> None:
    services = _box()
    backend = FakeBackend(services)
    services["a"].phase = RunState.STOPPING
    step = WorkerServicesStep(backend, NAMES)
    ctx = step_context(tmp_path / "s.json")
    assert not step.check(ctx, Mode.MAINTENANCE)
    with pytest.raises(StepPending, match=r"a \(stopping\)"):
        step.apply(ctx)
    assert "stop a" not in backend.calls
    services["a"].phase, services["a"].active = None, False
    converge(step, ctx, Mode.MAINTENANCE)
