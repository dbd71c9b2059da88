"""The worker and scheduler steps against a real supervisord (Debian's /usr/bin/supervisord).

Each test gets its own supervisord (temp dir, unix socket, authenticated
inet server) from ``tests.fixtures.supervisor``; it is stopped by its PID even
when the test fails. Process states are read back with ``supervisorctl``, not
through the code under test.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from agent.core.errors import StepError, StepPending
from agent.core.model import Mode
from agent.daemon.backends.base import BackendError, RunState
from agent.daemon.backends.supervisor import SupervisorBackend
from agent.daemon.steps import quiesce
from agent.daemon.steps.base import StepContext
from agent.daemon.steps.jobs import SchedulerJobsStep
from agent.daemon.steps.services import WorkerServicesStep
from demo.harness.processes import wait_until
from demo.harness.supervisor import HTTP_PASSWORD, HTTP_USER, Supervisord
from tests.fixtures.steps import converge, step_context
from tests.fixtures.supervisor import supervisord  # noqa: F401

WORKERS = ["alpha", "beta", "gamma", "pool"]
WORKER_NAMES = {"alpha:alpha", "beta:beta", "gamma:gamma", "pool:pool_a", "pool:pool_b"}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_enter_stops_workers_and_exit_starts_exactly_those_that_ran(supervisord: Supervisord, tmp_path: Path) -> None:
    before = supervisord.running()
    assert supervisord.states()["gamma:gamma"] == "STOPPED"
    pids = supervisord.pids()
    step = WorkerServicesStep(SupervisorBackend(supervisord.unix_url, tmp_path / "holds", timeout=20), WORKERS)
    ctx = step_context(tmp_path / "state.json")

    assert not step.check(ctx, Mode.MAINTENANCE)
    converge(step, ctx, Mode.MAINTENANCE)

    states = supervisord.states()
    assert {name for name in WORKER_NAMES if states[name] == "RUNNING"} == set()
    assert not any(_alive(pids[name]) for name in ("alpha", "beta", "pool:pool_a", "pool:pool_b"))
    assert states["stubborn:stubborn"] == "RUNNING", "a program not listed is left alone"

    converge(step, step_context(tmp_path / "state.json", Mode.ACTIVE, index=43), Mode.ACTIVE)
    assert supervisord.running() == before
    assert supervisord.states()["gamma:gamma"] == "STOPPED"
    assert ctx.memory.path.exists() and step_context(tmp_path / "state.json").notes(step) == {}


def test_group_and_glob_names_expand_to_their_processes(supervisord: Supervisord, tmp_path: Path) -> None:
    backend = SupervisorBackend(supervisord.unix_url, tmp_path / "holds", timeout=20)
    assert backend.expand(["pool"]) == ["pool:pool_a", "pool:pool_b"]
    assert backend.expand(["pool:pool_b", "al*"]) == ["pool:pool_b", "alpha:alpha"]
    with pytest.raises(BackendError, match="no program or group 'nosuch'"):
        backend.expand(["nosuch"])


def test_a_group_is_stopped_and_restarted_as_a_whole(supervisord: Supervisord, tmp_path: Path) -> None:
    step = WorkerServicesStep(SupervisorBackend(supervisord.unix_url, tmp_path / "holds", timeout=20), ["pool"])
    converge(step, step_context(tmp_path / "s.json"), Mode.MAINTENANCE)
    assert {supervisord.states()[n] for n in ("pool:pool_a", "pool:pool_b")} == {"STOPPED"}
    assert "alpha:alpha" in supervisord.running()
    converge(step, step_context(tmp_path / "s.json", Mode.ACTIVE, 43), Mode.ACTIVE)
    assert {"pool:pool_a", "pool:pool_b"} <= supervisord.running()


def test_crash_midway_then_a_restarted_agent_restores_the_same_set(supervisord: Supervisord, tmp_path: Path) -> None:
    """A stop that times out interrupts entering; a new step over the same state file converges."""
    before = supervisord.running()
    services = ["alpha", "stubborn", "beta", "gamma"]
    impatient = WorkerServicesStep(SupervisorBackend(supervisord.unix_url, tmp_path / "holds", timeout=1), services)
    with pytest.raises(StepError) as failed:
        impatient.apply(step_context(tmp_path / "state.json"))
    assert "stopProcess(stubborn:stubborn) timed out after 1s" in failed.value.detail
    assert "alpha:alpha" not in supervisord.running() and "beta:beta" in supervisord.running()

    restarted = WorkerServicesStep(SupervisorBackend(supervisord.unix_url, tmp_path / "holds", timeout=20), services)
    ctx = step_context(tmp_path / "state.json")
    snapshot = ctx.notes(restarted)["snapshot"]
    assert {r["name"] for r in snapshot if r["active"]} == {"alpha:alpha", "stubborn:stubborn", "beta:beta"}
    # supervisord still SIGKILLs stubborn after its stopwaitsecs; the reconciler retries until then.
    wait_until(lambda: _converged(restarted, ctx), timeout=15, interval=0.3, what="entering to converge")
    assert not {"alpha:alpha", "stubborn:stubborn", "beta:beta"} & supervisord.running()
    assert ctx.notes(restarted)["snapshot"] == snapshot, "a re-run must not overwrite the snapshot"

    converge(restarted, step_context(tmp_path / "state.json", Mode.ACTIVE, 43), Mode.ACTIVE)
    assert supervisord.running() == before
    assert supervisord.states()["gamma:gamma"] == "STOPPED"


def _converged(step: WorkerServicesStep, ctx: StepContext) -> bool:
    try:
        converge(step, ctx, Mode.MAINTENANCE)
    except StepError:
        return False
    return True


def test_failed_start_names_the_program_and_its_output(supervisord: Supervisord, tmp_path: Path) -> None:
    backend = SupervisorBackend(supervisord.unix_url, tmp_path / "holds", timeout=20)
    with pytest.raises(BackendError) as failed:
        backend.start("crasher:crasher")
    assert "startProcess(crasher:crasher) failed" in failed.value.detail
    assert "boom: cannot open queue" in failed.value.detail


def test_supervisord_not_running_is_a_step_error_naming_the_socket(tmp_path: Path) -> None:
    url = f"unix://{tmp_path}/absent.sock"
    step = WorkerServicesStep(SupervisorBackend(url, tmp_path / "holds", timeout=2), ["alpha"])
    with pytest.raises(StepError) as failed:
        step.check(step_context(tmp_path / "s.json"), Mode.MAINTENANCE)
    assert f"supervisord at {url} is not reachable" in failed.value.detail


def test_http_with_credentials_and_a_wrong_password(supervisord: Supervisord, tmp_path: Path) -> None:
    good = SupervisorBackend(supervisord.http_url, tmp_path / "holds", username=HTTP_USER, password=HTTP_PASSWORD, timeout=10)
    assert good.run_state("alpha:alpha") is RunState.RUNNING
    bad = SupervisorBackend(supervisord.http_url, tmp_path / "holds", username=HTTP_USER, password="wrong", timeout=10)
    with pytest.raises(BackendError, match="HTTP 401"):
        bad.run_state("alpha:alpha")


def test_scheduler_programs_are_stopped_and_started_again(supervisord: Supervisord, tmp_path: Path) -> None:
    backend = SupervisorBackend(supervisord.unix_url, tmp_path / "holds", timeout=20)
    step = SchedulerJobsStep(backend, ["beta", "gamma"], drain_timeout=5, on_drain_timeout="stop")
    started = time.monotonic()
    converge(step, step_context(tmp_path / "s.json"), Mode.MAINTENANCE)
    assert time.monotonic() - started < 5, "supervisor programs have no separate run to drain"
    assert {supervisord.states()[n] for n in ("beta:beta", "gamma:gamma")} == {"STOPPED"}
    converge(step, step_context(tmp_path / "s.json", Mode.ACTIVE, 43), Mode.ACTIVE)
    assert supervisord.states()["beta:beta"] == "RUNNING"
    assert supervisord.states()["gamma:gamma"] == "STOPPED"


def test_a_program_still_stopping_when_the_window_is_cancelled_is_started_once_it_stopped(supervisord: Supervisord, tmp_path: Path) -> None:
    """A stop that outlasts the timeout leaves the program STOPPING; cancelling, or an agent
    restarted meanwhile, must not count it as running: it is started once it has stopped,
    and the snapshot is kept until it is observed RUNNING."""
    assert "started" in supervisord.ctl("start", "slowstop").stdout
    step = WorkerServicesStep(SupervisorBackend(supervisord.unix_url, tmp_path / "holds", timeout=1), ["slowstop"])
    entering = step_context(tmp_path / "s.json")
    with pytest.raises(StepError, match="timed out"):
        step.apply(entering)
    assert supervisord.states()["slowstop:slowstop"] == "STOPPING"
    restarted = step_context(tmp_path / "s.json", Mode.ACTIVE, 43)  # a new agent on the same state file, window cancelled
    assert not step.check(restarted, Mode.ACTIVE)
    with pytest.raises(StepPending, match=r"slowstop:slowstop \(stopping\)"):
        step.revert(restarted)
    assert quiesce.snapshot_from_notes(restarted.notes(step)) is not None, "the restore list must survive a pending restore"

    def restored() -> bool:
        try:
            step.revert(restarted)
        except StepPending:
            return False
        return True
    wait_until(restored, timeout=15, interval=0.2, what="slowstop to be started again after it stopped")
    assert supervisord.states()["slowstop:slowstop"] == "RUNNING"
    assert step.check(restarted, Mode.ACTIVE)


def test_entering_waits_for_a_program_that_is_still_stopping(supervisord: Supervisord, tmp_path: Path) -> None:
    assert "started" in supervisord.ctl("start", "slowstop").stdout
    step = WorkerServicesStep(SupervisorBackend(supervisord.unix_url, tmp_path / "holds", timeout=1), ["slowstop"])
    ctx = step_context(tmp_path / "s.json")
    with pytest.raises(StepError, match="timed out"):
        step.apply(ctx)
    assert not step.check(ctx, Mode.MAINTENANCE), "STOPPING is not stopped"
    with pytest.raises(StepPending, match="finish stopping slowstop:slowstop"):
        step.apply(ctx)
    wait_until(lambda: step.check(ctx, Mode.MAINTENANCE), timeout=15, what="slowstop to have stopped")


def test_a_hold_is_refused_until_supervisors_start_hook_has_run(supervisord: Supervisord, tmp_path: Path) -> None:
    hook_output = tmp_path / "run" / "holds.conf"
    backend = SupervisorBackend(supervisord.unix_url, tmp_path / "holds", timeout=20, hook_output=hook_output)
    step = WorkerServicesStep(backend, ["alpha"])
    with pytest.raises(StepError) as failed:
        step.apply(step_context(tmp_path / "s.json"))
    assert f"cannot hold alpha:alpha: supervisor.service's start hook has not run ({hook_output} is missing)" in failed.value.detail
    assert backend.run_state("alpha:alpha") is RunState.RUNNING, "not held: not stopped either"
    hook_output.parent.mkdir()
    hook_output.write_text("; written by the hook\n")
    converge(step, step_context(tmp_path / "s.json"), Mode.MAINTENANCE)
    assert backend.is_held("alpha:alpha") and backend.run_state("alpha:alpha") is RunState.STOPPED
