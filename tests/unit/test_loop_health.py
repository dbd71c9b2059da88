"""The decision loop's own errors are counted, shown, and end when the cause goes away."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from agent.core.model import Role, State
from demo.harness.processes import wait_until
from tests.fakes import RecordingStep, make_reconciler, read, sample


def test_an_unwritable_state_dir_is_counted_and_shown_until_it_is_writable_again(tmp_path: Path) -> None:
    journal: list[str] = []
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    rec, published = make_reconciler(state_dir, [Role.WEB], {Role.WEB: [RecordingStep("web-a", Role.WEB, journal)]})
    shutil.rmtree(state_dir)
    state_dir.write_text("")  # the state_dir is now a file: every save fails, also for root
    rec.on_watch_event(read(b"maintenance", 3))
    rec.start()
    try:
        wait_until(lambda: (sample(rec.metrics, "maintenance_loop_errors_total") or 0) >= 2, 10, what="loop errors to be counted")
        assert rec.health.error and f"state file {state_dir / 'state.json'} cannot be written" in rec.health.error
        # the status is published after the error is counted: wait for it rather than read it in between
        wait_until(lambda: bool(published[-1].error and published[-1].error.startswith("cannot make progress: state file")), 10,
                   what="the status to say why nothing moves")
        assert rec.state is not State.MAINTENANCE
        assert journal == [], "nothing acts while the state the box moved to cannot be saved"
        state_dir.unlink()
        state_dir.mkdir()
        wait_until(lambda: rec.state is State.MAINTENANCE and rec.health.error is None and published[-1].error is None, 10,
                   what="recovery, published")
    finally:
        rec.stop()


def test_a_bug_in_the_loop_is_counted_and_logged_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rec, published = make_reconciler(tmp_path, [Role.WEB], {Role.WEB: []})

    def broken() -> float:
        raise KeyError("oops")
    rec.tick = broken  # type: ignore[method-assign]
    rec.start()
    try:
        wait_until(lambda: (sample(rec.metrics, "maintenance_loop_errors_total") or 0) >= 3, 10, what="loop errors")
        time.sleep(0.1)
    finally:
        rec.stop()
    assert rec.health.error == "internal error: KeyError: 'oops'"
    assert capsys.readouterr().out.count("reconcile tick failed") == 1
