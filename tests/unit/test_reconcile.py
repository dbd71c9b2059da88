"""The reconciler's decisions, with fake steps and a fake fleet (no services)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from structlog.testing import capture_logs

from agent.core.model import Member, Role, State, Status
from agent.daemon.steps.base import StepContext
from tests.fakes import FakePeers, RecordingStep, make_reconciler, read, sample, settle


def steps_for(journal: list[str], *roles: Role) -> dict[Role, list[RecordingStep]]:
    return {r: [RecordingStep(f"{r.value}-a", r, journal), RecordingStep(f"{r.value}-b", r, journal)] for r in roles}


def test_enter_and_exit_run_steps_in_order_and_report(tmp_path: Path) -> None:
    journal: list[str] = []
    steps = steps_for(journal, Role.WEB, Role.WORKER)
    rec, published = make_reconciler(tmp_path, [Role.WORKER, Role.WEB], steps)
    rec.on_watch_event(read(b"maintenance", 11))
    settle(rec)
    assert rec.state is State.MAINTENANCE
    assert journal == ["apply:web-a", "apply:web-b", "apply:worker-a", "apply:worker-b"]
    last = published[-1]
    assert (last.state, last.intent_index, last.progress) == ("maintenance", 11, {"web": "maintenance", "worker": "maintenance"})
    journal.clear()
    rec.on_watch_event(read(b"off", 12))
    settle(rec)
    assert rec.state is State.ACTIVE
    assert journal == ["revert:worker-b", "revert:worker-a", "revert:web-b", "revert:web-a"]
    assert published[-1].intent_index == 12



def test_a_flip_publishes_entering_first_not_the_old_state_under_the_new_intent(tmp_path: Path) -> None:
    """Every box writes its status at a flip: one write each, not two (the fleet's burst at the flip halves)."""
    journal: list[str] = []
    rec, published = make_reconciler(tmp_path, [Role.WEB], steps_for(journal, Role.WEB))
    settle(rec)
    before = len(published)
    rec.on_watch_event(read(b"maintenance", 11))
    rec.tick()  # the flip's tick: it enters and runs the role's steps
    flip = [(p.state, p.intent_index, p.progress) for p in published[before:]]
    assert flip[0] == ("entering", 11, {"web": "entering"}), "the first status of a flip is the new state under the new intent"
    assert all(index == 11 for _, index, _ in flip), f"nothing under the old intent, nor the old state under the new: {flip}"
    settle(rec)
    before = len(published)
    rec.on_watch_event(read(b"maintenance-please", 12))  # refused: nothing moves, and the refusal is shown
    settle(rec)
    assert len(published) == before + 1 and published[-1].intent_error and published[-1].state == "maintenance"

def test_garbage_never_moves_the_box(tmp_path: Path) -> None:
    journal: list[str] = []
    rec, published = make_reconciler(tmp_path, [Role.WEB], steps_for(journal, Role.WEB))
    rec.on_watch_event(read(b"on", 5))
    settle(rec)
    journal.clear()
    for index, garbage in enumerate([b"of", b"{", b"\xff", b'{"mode":"off","x":1}', b""], start=6):
        rec.on_watch_event(read(garbage, index))
        settle(rec)
        assert rec.state is State.MAINTENANCE
        assert published[-1].intent_error and f"intent {index} refused" in published[-1].intent_error
        assert published[-1].intent_index == 5
    assert journal == []
    assert sample(rec.metrics, "maintenance_intent_errors_total") == 5
    rec.on_watch_event(read(b"off", 20))
    settle(rec)
    assert rec.state is State.ACTIVE and published[-1].intent_error is None


def test_missing_key_means_active_at_start_but_holds_in_maintenance(tmp_path: Path) -> None:
    journal: list[str] = []
    rec, published = make_reconciler(tmp_path, [Role.WEB], steps_for(journal, Role.WEB))
    rec.on_watch_event(read(None, 0))
    settle(rec)
    assert rec.state is State.ACTIVE and journal == []
    rec.on_watch_event(read(b"on", 8))
    settle(rec)
    rec.on_watch_event(read(None, 0))
    settle(rec)
    assert rec.state is State.MAINTENANCE
    assert "intent missing" in published[-1].intent_error


def test_failing_step_is_retried_reported_and_never_skipped(tmp_path: Path) -> None:
    journal: list[str] = []
    steps = steps_for(journal, Role.WEB, Role.WORKER)
    steps[Role.WEB][1].fail_next = 2
    rec, published = make_reconciler(tmp_path, [Role.WEB, Role.WORKER], steps)
    rec.on_watch_event(read(b"on", 4))
    rec.tick()
    assert rec.state is State.ENTERING
    assert "web-b: apply failed on purpose" in published[-1].error
    assert "apply:worker-a" not in journal  # never skipped past
    settle(rec)
    assert rec.state is State.MAINTENANCE and published[-1].error is None
    assert journal.count("apply:web-b") == 3
    assert sample(rec.metrics, "maintenance_step_failures_total", role="web", step="web-b") == 2


def test_step_that_does_not_hold_is_an_error(tmp_path: Path) -> None:
    journal: list[str] = []
    steps = steps_for(journal, Role.WEB)
    steps[Role.WEB][0].lie = True
    rec, published = make_reconciler(tmp_path, [Role.WEB], steps)
    rec.on_watch_event(read(b"on", 4))
    rec.tick()
    assert rec.state is State.ENTERING
    assert "did not hold" in published[-1].error


def test_pending_step_shows_blocked_on(tmp_path: Path) -> None:
    journal: list[str] = []
    steps = steps_for(journal, Role.SCHEDULER)
    steps[Role.SCHEDULER][0].pending = "draining nightly-report"
    rec, published = make_reconciler(tmp_path, [Role.SCHEDULER], steps)
    rec.on_watch_event(read(b"on", 4))
    rec.tick()
    assert rec.state is State.ENTERING and published[-1].blocked_on == "draining nightly-report"
    steps[Role.SCHEDULER][0].pending = None
    settle(rec)
    assert rec.state is State.MAINTENANCE and published[-1].blocked_on is None


def test_gate_blocks_until_earlier_roles_report_the_same_intent(tmp_path: Path) -> None:
    journal: list[str] = []
    fleet = FakePeers(members_list=[Member("edge-1", ("edge",), "n1", True), Member("box-1", ("web",), "n2", True)])
    rec, published = make_reconciler(tmp_path, [Role.WEB], steps_for(journal, Role.WEB), peers=fleet)
    rec.on_watch_event(read(b"on", 30))
    rec.tick()
    assert journal == [] and published[-1].blocked_on == "gate web: waiting for edge-1 (edge: no status yet)"
    assert fleet.watched[-1] == ("edge-1",)
    fleet.statuses["edge-1"] = _status("edge-1", "edge", "maintenance", 29)
    rec.tick()
    assert journal == [] and "still on intent 29" in published[-1].blocked_on
    fleet.statuses["edge-1"] = _status("edge-1", "edge", "maintenance", 30)
    settle(rec)
    assert rec.state is State.MAINTENANCE and journal == ["apply:web-a", "apply:web-b"]


def test_change_of_mind_midway_turns_around(tmp_path: Path) -> None:
    journal: list[str] = []
    steps = steps_for(journal, Role.WEB, Role.WORKER)
    steps[Role.WORKER][0].fail_next = 100
    rec, _ = make_reconciler(tmp_path, [Role.WEB, Role.WORKER], steps)
    rec.on_watch_event(read(b"on", 4))
    rec.tick()
    assert rec.state is State.ENTERING and steps[Role.WEB][1].applied
    rec.on_watch_event(read(b"off", 5))
    steps[Role.WORKER][0].fail_next = 0
    settle(rec)
    assert rec.state is State.ACTIVE
    assert not any(s.applied for ss in steps.values() for s in ss)


def test_restart_mid_transition_converges_without_repeating_work(tmp_path: Path) -> None:
    journal: list[str] = []
    steps = steps_for(journal, Role.WEB, Role.WORKER)
    steps[Role.WORKER][1].fail_next = 100
    rec, _ = make_reconciler(tmp_path, [Role.WEB, Role.WORKER], steps)
    rec.on_watch_event(read(b"on", 4))
    rec.tick()
    assert rec.state is State.ENTERING
    # "Crash": a new reconciler over the same state file and the same world.
    steps[Role.WORKER][1].fail_next = 0
    journal.clear()
    rec2, published = make_reconciler(tmp_path, [Role.WEB, Role.WORKER], steps)
    assert rec2.state is State.ENTERING
    rec2.on_watch_event(read(b"on", 4))
    settle(rec2)
    assert rec2.state is State.MAINTENANCE
    assert journal == ["apply:worker-b"]  # web was settled, worker-a held: only the missing action runs
    assert published[-1].progress == {"web": "maintenance", "worker": "maintenance"}


def test_same_mode_new_intent_rechecks_steps_and_adopts_index(tmp_path: Path) -> None:
    journal: list[str] = []
    steps = steps_for(journal, Role.WEB)
    rec, published = make_reconciler(tmp_path, [Role.WEB], steps)
    rec.on_watch_event(read(b"on", 4))
    settle(rec)
    steps[Role.WEB][0].applied = False  # drifted
    rec.on_watch_event(read(b'{"mode": "on", "message": "longer"}', 9))
    settle(rec)
    assert steps[Role.WEB][0].applied and published[-1].intent_index == 9


def _status(box: str, role: str, state: str, index: int) -> Status:
    return Status(box, (role,), State(state), index, datetime(2026, 12, 2, 21, 0, tzinfo=UTC), progress={role: state})


def test_auto_end_leaves_in_the_exit_order(tmp_path: Path) -> None:
    """auto_end turns a maintenance intent into 'leave now': gates must use the exit order."""
    journal: list[str] = []
    fleet = FakePeers(members_list=[Member("edge-1", ("edge",), "n1", True), Member("worker-1", ("worker",), "n3", True)])
    rec, published = make_reconciler(tmp_path, [Role.WEB], steps_for(journal, Role.WEB), peers=fleet)
    fleet.statuses["edge-1"] = _status("edge-1", "edge", "maintenance", 5)
    rec.on_watch_event(read(b"on", 5))
    settle(rec)
    assert rec.state is State.MAINTENANCE
    past = '{"mode": "on", "starts_at": "2020-01-01T00:00:00Z", "ends_at": "2020-01-01T01:00:00Z", "auto_end": true}'
    rec.on_watch_event(read(past.encode(), 6))
    rec.tick()
    assert rec.state is State.EXITING
    assert published[-1].blocked_on == "gate web: waiting for worker-1 (worker: no status yet)"  # not the edge
    fleet.statuses["worker-1"] = _status("worker-1", "worker", "active", 6)
    settle(rec)
    assert rec.state is State.ACTIVE and journal[-1] == "revert:web-a"


def test_deleting_the_key_cancels_a_scheduled_window(tmp_path: Path) -> None:
    journal: list[str] = []
    rec, published = make_reconciler(tmp_path, [Role.WEB], steps_for(journal, Role.WEB))
    rec.on_watch_event(read(b'{"mode": "on", "starts_at": "2099-01-01T00:00:00Z"}', 7))
    settle(rec)
    assert published[-1].scheduled_for == "2099-01-01T00:00:00+00:00"
    rec.on_watch_event(read(None, 0))
    settle(rec)
    assert rec.intent.mode.value == "active" and published[-1].scheduled_for is None and published[-1].intent_error is None


def test_a_box_on_its_way_back_is_not_pulled_into_a_window_scheduled_for_later(tmp_path: Path) -> None:
    journal: list[str] = []
    steps = steps_for(journal, Role.WEB)
    steps[Role.WEB][0].fail_next = 1  # the exit is still under way when the next window is scheduled
    rec, _ = make_reconciler(tmp_path, [Role.WEB], steps)
    rec.on_watch_event(read(b"on", 4))
    settle(rec)
    steps[Role.WEB][0].fail_next = 1
    rec.on_watch_event(read(b"off", 5))
    rec.tick()
    assert rec.state is State.EXITING
    rec.on_watch_event(read(b'{"mode": "on", "starts_at": "2099-01-01T00:00:00Z"}', 6))
    settle(rec)
    assert rec.state is State.ACTIVE


class DriftingStep(RecordingStep):
    """A step the reconciler re-checks while settled; acting feeds the watchdog like a long real step does."""

    repairs_drift = True

    def apply(self, ctx: StepContext) -> None:
        ctx.heartbeat()
        super().apply(ctx)


def test_drift_repair_feeds_the_watchdog_and_logs_no_heartbeat_field(tmp_path: Path) -> None:
    journal: list[str] = []
    step = DriftingStep("web-map", Role.WEB, journal)
    with capture_logs() as logs:
        rec, published = make_reconciler(tmp_path, [Role.WEB], {Role.WEB: [step]}, on_tick=lambda: journal.append("watchdog"))
        rec.on_watch_event(read(b"on", 4))
        settle(rec)
        assert rec.state is State.MAINTENANCE
        journal.clear()
        step.applied = False  # e.g. HAProxy restarted with an old map file
        rec.tick()
    assert step.applied
    assert journal == ["watchdog", "apply:web-map"], "the repair must run with the watchdog's heartbeat"
    repairs = [e for e in logs if e["event"] == "drift: step no longer holds; repairing"]
    assert len(repairs) == 1
    assert "heartbeat" not in repairs[0] and repairs[0]["role"] == "web" and repairs[0]["step"] == "web-map"


def test_failed_drift_repair_is_reported_and_retried(tmp_path: Path) -> None:
    journal: list[str] = []
    step = DriftingStep("web-map", Role.WEB, journal)
    rec, published = make_reconciler(tmp_path, [Role.WEB], {Role.WEB: [step]})
    rec.on_watch_event(read(b"on", 4))
    settle(rec)
    step.applied = False
    step.fail_next = 1
    rec.tick()
    assert published[-1].error == "web-map: drift repair: web-map: apply failed on purpose"
    assert sample(rec.metrics, "maintenance_step_failures_total", role="web", step="web-map") == 1
    rec.tick()
    assert not step.applied, "a failed repair waits out its retry delay"
    time.sleep(0.06)  # retry_max of the fake reconciler: 0.05 s
    rec.tick()
    assert step.applied and published[-1].error is None and rec.state is State.MAINTENANCE
