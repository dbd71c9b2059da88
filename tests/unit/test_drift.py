"""Drift on a settled box, without services: what the steps describe, what the reconciler does with it,
when the drift watch wakes the reconciler, and what maintctl says."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from agent.clients.consul import KeyRead
from agent.core.model import Intent, Mode, Role, State, Status
from agent.daemon.local.statefile import StateFile
from agent.daemon.steps.base import StepContext
from agent.daemon.steps.jobs import SchedulerJobsStep
from agent.daemon.steps.services import WorkerServicesStep
from agent.daemon.watches.driftwatch import DriftWatch
from agent.ops.fleet import BoxView, FleetSnapshot
from tests.fakes import FakeBackend, FakeService, RecordingStep, make_reconciler, read, sample, settle
from tests.fixtures.steps import converge, step_context

HOLD = 900.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _worker(services: dict[str, FakeService], clock: Clock, on_drift: str = "repair") -> WorkerServicesStep:
    return WorkerServicesStep(FakeBackend(services), list(services), on_drift=on_drift, hold_after_window=HOLD, clock=clock)  # type: ignore[arg-type]


def test_worker_drift_in_the_window_names_what_runs_and_apply_repairs_it(tmp_path: Path) -> None:
    services = {"billing": FakeService(), "mailer": FakeService(active=False, held=True)}
    step = _worker(services, Clock())
    ctx = step_context(tmp_path / "s.json")
    converge(step, ctx, Mode.MAINTENANCE)
    assert step.drift(ctx, Mode.MAINTENANCE) == []
    services["billing"].active = True  # started by hand
    services["mailer"].held = False  # its hold removed by hand
    assert step.drift(ctx, Mode.MAINTENANCE) == ["billing running", "mailer not held"]
    step.apply(ctx)
    assert step.drift(ctx, Mode.MAINTENANCE) == [] and not services["billing"].active and services["mailer"].held


def test_after_the_window_what_ran_before_is_held_for_the_hold_only_and_nothing_else(tmp_path: Path) -> None:
    services = {"billing": FakeService(), "mailer": FakeService(active=False, held=True)}
    clock = Clock()
    step = _worker(services, clock)
    converge(step, step_context(tmp_path / "s.json"), Mode.MAINTENANCE)
    back = step_context(tmp_path / "s.json", Mode.ACTIVE, index=43)
    converge(step, back, Mode.ACTIVE)
    assert services["billing"].active and not services["mailer"].active
    assert "snapshot" not in back.notes(step), "the snapshot is consumed; only what ran before is kept"
    services["mailer"].active = True  # did not run before the window: not ours
    assert step.drift(back, Mode.ACTIVE) == [] and step.check(back, Mode.ACTIVE)
    services["billing"].active = False
    assert step.drift(back, Mode.ACTIVE) == ["billing (not running), ran before the window"]
    step.revert(back)
    assert services["billing"].active and services["mailer"].active, "a repair after the window never stops anything"
    clock.now += HOLD
    services["billing"].active = False  # an operator's decision on another day
    assert step.drift(back, Mode.ACTIVE) == [] and step.check(back, Mode.ACTIVE)


def test_the_next_window_snapshots_afresh_over_what_ran_before(tmp_path: Path) -> None:
    services = {"billing": FakeService(), "mailer": FakeService()}
    step = _worker(services, Clock())
    converge(step, step_context(tmp_path / "s.json"), Mode.MAINTENANCE)
    converge(step, step_context(tmp_path / "s.json", Mode.ACTIVE, index=43), Mode.ACTIVE)
    services["mailer"].active, services["mailer"].held = False, True  # retired between the windows
    ctx = step_context(tmp_path / "s.json", index=44)
    converge(step, ctx, Mode.MAINTENANCE)
    assert {r["name"] for r in ctx.notes(step)["snapshot"] if r["active"]} == {"billing"}
    converge(step, step_context(tmp_path / "s.json", Mode.ACTIVE, index=45), Mode.ACTIVE)
    assert not services["mailer"].active


def test_scheduler_drift_names_a_job_released_or_running(tmp_path: Path) -> None:
    jobs = {"report": FakeService(), "cleanup": FakeService()}
    step = SchedulerJobsStep(FakeBackend(jobs), list(jobs), drain_timeout=60, on_drain_timeout="stop", clock=Clock())
    ctx = step_context(tmp_path / "s.json")
    converge(step, ctx, Mode.MAINTENANCE)
    jobs["report"].held = False
    jobs["cleanup"].running_job = True
    assert step.drift(ctx, Mode.MAINTENANCE) == ["report not held", "cleanup running (cleanup-run)"]


class DriftingStep(RecordingStep):
    repairs_drift = True
    local_check = True


def test_repair_is_counted_and_report_only_shows_in_the_status_until_it_is_gone(tmp_path: Path) -> None:
    journal: list[str] = []
    repaired = DriftingStep("web-map", Role.WEB, journal)
    reported = DriftingStep("workers", Role.WORKER, journal)
    reported.on_drift = "report"
    rec, published = make_reconciler(tmp_path, [Role.WEB, Role.WORKER], {Role.WEB: [repaired], Role.WORKER: [reported]})
    rec.on_watch_event(read(b"on", 4))
    settle(rec)
    journal.clear()
    repaired.applied = reported.applied = False
    rec.tick()
    assert journal == ["apply:web-map"], "only the repairing step acts"
    assert sample(rec.metrics, "maintenance_drift_repairs_total", role="web", step="web-map") == 1
    assert published[-1].drift == "worker/workers: workers no longer holds" and published[-1].state == "maintenance"
    assert sample(rec.metrics, "maintenance_drift_reported", role="worker", step="workers") == 1
    rec.on_watch_event(read(b'{"mode": "on", "message": "new text"}', 5))  # a new intent of the same mode: still not acted on
    settle(rec)
    assert "apply:workers" not in journal and published[-1].intent_index == 5
    reported.applied = True  # the operator stopped the worker again
    rec.tick()
    assert published[-1].drift is None and sample(rec.metrics, "maintenance_drift_reported", role="worker", step="workers") == 0
    rec.on_watch_event(read(b"off", 6))
    settle(rec)
    assert rec.state is State.ACTIVE and journal[-2:] == ["revert:workers", "revert:web-map"]


def test_drift_watch_wakes_the_reconciler_only_when_what_drifts_changes(tmp_path: Path) -> None:
    journal: list[str] = []
    local = DriftingStep("map", Role.EDGE, journal)
    remote = RecordingStep("node-maint", Role.WEB, journal)
    remote.repairs_drift = True  # but asks Consul: never probed by the watch
    local.applied = remote.applied = True
    woken: list[int] = []
    view: list[tuple[Intent | None, Mode | None]] = [(Intent(mode=Mode.MAINTENANCE, index=3), Mode.MAINTENANCE)]
    watch = DriftWatch("edge-1", {Role.EDGE: [local], Role.WEB: [remote]}, lambda: view[0], lambda: woken.append(1),
                       StateFile(tmp_path / "s.json"), _QuietLog(), interval=1.0)
    assert [s.name for _, s in watch.local] == ["map"]
    assert not watch.look() and woken == []
    local.applied = False
    assert watch.look() and len(woken) == 1
    assert not watch.look() and len(woken) == 1, "the same drift (reported, or a repair being retried) does not wake again"
    local.applied = True
    assert watch.look() and len(woken) == 2, "drift gone: the status may change"
    view[0] = (Intent(mode=Mode.MAINTENANCE, index=3), None)  # moving: nothing to look at
    local.applied = False
    assert not watch.look() and len(woken) == 2
    assert journal == [], "the watch never acts"


class _QuietLog:
    def bind(self, **_: object) -> _QuietLog:
        return self

    def __getattr__(self, name: str) -> object:
        return lambda *args, **kwargs: None


def test_maintctl_verdict_counts_reported_drift_as_not_yet() -> None:
    intent = Intent(mode=Mode.MAINTENANCE, index=7)
    status = Status("worker-1", ("worker",), State.MAINTENANCE, 7, datetime(2026, 1, 1, tzinfo=UTC), progress={"worker": "maintenance"})
    box = BoxView("worker-1", ("worker",), True, True, status, None)
    snapshot = FleetSnapshot("prod", "maintenance/prod/desired", 1, KeyRead(1, b"on", 7), intent, None, (box,))
    assert snapshot.converged and snapshot.verdict() == 0 and snapshot.drift() == []
    drifted = BoxView("worker-1", ("worker",), True, True, Status(**{**status.__dict__, "drift": "worker/worker-services: billing running"}), None)
    snapshot = FleetSnapshot("prod", "maintenance/prod/desired", 1, KeyRead(1, b"on", 7), intent, None, (drifted,))
    assert snapshot.converged, "the fleet did reach maintenance (maintctl wait is done)"
    assert snapshot.verdict() == 1 and snapshot.drift() == ["worker-1: worker/worker-services: billing running"]


class HungProbeStep(DriftingStep):
    """A local check stuck in a backend call (a hung systemctl, up to the backend's 60 s timeout)."""

    def __init__(self, journal: list[str]) -> None:
        super().__init__("services", Role.WORKER, journal)
        self.entered = threading.Event()
        self.release = threading.Event()

    def drift(self, ctx: StepContext, target: Mode, quick: bool = False) -> list[str]:
        self.entered.set()
        self.release.wait(10)
        return []


def test_a_hung_drift_probe_does_not_hold_up_the_stop(tmp_path: Path) -> None:
    """The watch never acts, so a stop need not wait for its probe: the agent's SIGTERM bound (the grace of the
    action in flight, then the session release) must not grow by a backend timeout spent on a probe."""
    step = HungProbeStep([])
    watch = DriftWatch("worker-1", {Role.WORKER: [step]}, lambda: (Intent(mode=Mode.MAINTENANCE, index=3), Mode.MAINTENANCE),
                       lambda: None, StateFile(tmp_path / "s.json"), _QuietLog(), interval=0.05)
    unblock = threading.Timer(5.0, step.release.set)
    watch.start()
    unblock.start()
    try:
        assert step.entered.wait(5)
        started = time.monotonic()
        watch.stop()
        took = time.monotonic() - started
        assert took < 2.0, f"stopping the drift watch waited {took:.1f}s for a hung probe"
    finally:
        step.release.set()
        unblock.cancel()
