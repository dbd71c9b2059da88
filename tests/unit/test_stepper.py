"""StepRunner: check → apply/revert → check, for convergence and drift repair alike; failures come back as values."""

from __future__ import annotations

from pathlib import Path

import pytest
import structlog
from structlog.testing import capture_logs

from agent.core.errors import StepError, StepRefused
from agent.core.model import Intent, Mode, Role
from agent.daemon.decision.stepper import StepRunner
from agent.daemon.local.statefile import StateFile, StateFileUnwritable
from agent.daemon.steps.base import StepContext
from tests.fakes import RecordingStep

ON = Intent(Mode.MAINTENANCE, 21)


def runner(tmp_path: Path, beats: list[str]) -> StepRunner:
    return StepRunner("box-1", StateFile(tmp_path / "state.json"), structlog.get_logger(), heartbeat=lambda: beats.append("beat"))


def test_converge_acts_only_where_needed_in_order_and_stops_at_the_first_that_fails(tmp_path: Path) -> None:
    journal: list[str] = []
    first, second, third = (RecordingStep(f"s{i}", Role.WORKER, journal) for i in (1, 2, 3))
    first.applied = True
    second.fail_next = 1
    steps = runner(tmp_path, journal)
    run = steps.converge([first, second, third], steps.context(ON, Role.WORKER), Mode.MAINTENANCE)
    assert (run.holds, run.step, run.error) == (False, "s2", "s2: apply failed on purpose")
    assert journal == ["beat", "beat", "apply:s2"], "s1 already held; s3 never ran past the failure"
    journal.clear()
    run = steps.converge([first, second, third], steps.context(ON, Role.WORKER), Mode.MAINTENANCE)
    assert run.holds and journal == ["beat", "beat", "apply:s2", "beat", "apply:s3"]


def test_pending_and_lying_steps(tmp_path: Path) -> None:
    journal: list[str] = []
    draining = RecordingStep("jobs", Role.SCHEDULER, journal)
    draining.pending = "draining nightly-export"
    steps = runner(tmp_path, journal)
    run = steps.converge([draining], steps.context(ON, Role.SCHEDULER), Mode.MAINTENANCE)
    assert run.pending is not None and run.pending.blocked_on == "draining nightly-export" and run.error is None
    liar = RecordingStep("liar", Role.WEB, journal)
    liar.lie = True
    with pytest.raises(StepError, match="liar: did not hold after acting"):
        StepRunner.hold(liar, steps.context(ON, Role.WEB), Mode.MAINTENANCE)
    liar.repairs_drift = True
    found = steps.repair_drift({Role.WEB: [liar]}, ON, Mode.MAINTENANCE)
    assert found.failed is not None and found.failed[1].error == "liar: drift repair did not hold: liar no longer holds"
    assert found.repaired == () and found.reported == ()


def test_the_context_carries_the_heartbeat_and_binds_role_and_intent_to_the_log(tmp_path: Path) -> None:
    beats: list[str] = []
    steps = runner(tmp_path, beats)
    ctx = steps.context(ON, Role.EDGE)
    ctx.heartbeat()
    assert beats == ["beat"]
    with capture_logs() as logs:
        StepRunner.hold(RecordingStep("map", Role.EDGE, []), steps.context(ON, Role.EDGE), Mode.MAINTENANCE)
    assert [e["event"] for e in logs] == ["step acting", "step done"]
    assert all(e.get("role") == "edge" and e.get("intent_index") == 21 and "heartbeat" not in e for e in logs)


class _RaisingStep(RecordingStep):
    """A drift-checked step whose action raises ``error`` (a refused write, a state file that cannot be saved)."""

    def __init__(self, error: Exception, journal: list[str]) -> None:
        super().__init__("node-maint", Role.WEB, journal)
        self.repairs_drift = True
        self.applied = False
        self.error = error

    def apply(self, ctx: StepContext) -> None:
        raise self.error


def test_drift_repair_and_convergence_treat_a_failure_alike(tmp_path: Path) -> None:
    """The retry policy rides on the failure (a 403 is retried at the slow rate) and a state file that cannot be
    written is the loop's failure (``/readyz``), not a step's: on the drift path exactly as on the converge path."""
    refused = StepRefused("node-maint", "Consul refused node maintenance (403)")
    steps = runner(tmp_path, [])
    run = steps.converge([_RaisingStep(refused, [])], steps.context(ON, Role.WEB), Mode.MAINTENANCE)
    found = steps.repair_drift({Role.WEB: [_RaisingStep(refused, [])]}, ON, Mode.MAINTENANCE)
    assert run.failure is refused
    assert found.failed is not None and found.failed[1].failure is refused
    unwritable = StateFileUnwritable("state file /x/state.json cannot be written: No space left on device")
    with pytest.raises(StateFileUnwritable):
        steps.converge([_RaisingStep(unwritable, [])], steps.context(ON, Role.WEB), Mode.MAINTENANCE)
    with pytest.raises(StateFileUnwritable):
        steps.repair_drift({Role.WEB: [_RaisingStep(unwritable, [])]}, ON, Mode.MAINTENANCE)
