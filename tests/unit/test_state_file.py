"""An unusable state file: never forgotten, never overwritten, the box held and reported, an operator's reset resumes it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.cli.agent_main import cli
from agent.core.model import Role, State
from agent.daemon.local.statefile import StateFile, StateFileUnwritable, confirm_reset
from tests.fakes import RecordingStep, make_reconciler, read, sample, settle

GOOD_MAINTENANCE = {
    "machine": {"state": "maintenance", "since": "2026-01-01T00:00:00+00:00", "intent_index": 7, "progress": {"worker": "maintenance"}},
    "step:worker-services": {"snapshot": [{"name": "alpha", "active": True, "held": False}], "intent_index": 7},
    "session": "0b6c5b7e-0000-0000-0000-000000000000",
}

UNUSABLE: dict[str, bytes] = {
    "garbage": b"\x00\xffnot json at all",
    "truncated": json.dumps(GOOD_MAINTENANCE).encode()[:60],
    "empty": b"",
    "json null": b"null",
    "json list": b"[1, 2]",
    "json string": b'"maintenance"',
    "unknown state": json.dumps({"machine": {"state": "halfway", "intent_index": 3}}).encode(),
    "snapshot of the wrong shape": json.dumps({"step:worker-services": {"snapshot": [{"name": "alpha"}]}}).encode(),
    "machine not an object": json.dumps({"machine": "maintenance"}).encode(),
    "unknown section": json.dumps({"services": ["alpha"]}).encode(),
}


@pytest.mark.parametrize("content", UNUSABLE.values(), ids=UNUSABLE.keys())
def test_an_unusable_file_is_named_kept_and_never_overwritten(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(content)
    memory = StateFile(path)
    assert memory.problem and str(path) in memory.problem
    memory.put("session", "abc")  # the reporter keeps working in memory
    assert path.read_bytes() == content, "the evidence must stay as it was"
    assert not memory.reload()


@pytest.mark.parametrize("content", UNUSABLE.values(), ids=UNUSABLE.keys())
def test_the_box_is_held_reported_unknown_and_never_active(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "state.json").write_bytes(content)
    journal: list[str] = []
    steps = {Role.WORKER: [RecordingStep("worker-a", Role.WORKER, journal)]}
    rec, published = make_reconciler(tmp_path, [Role.WORKER], steps)
    for intent in (b"maintenance", b"active"):
        rec.on_watch_event(read(intent, 20 if intent == b"active" else 10))
        for _ in range(3):
            rec.tick()
        assert journal == [], "nothing acts on a box whose memory is lost"
        last = published[-1]
        assert last.state == State.UNKNOWN and last.progress == {"worker": "unknown"}
        assert last.error and last.error.startswith("state file unreadable: ") and "confirm-state-reset" in last.error
    assert sample(rec.metrics, "maintenance_state_file_unreadable") == 1
    assert b'maintenance_agent_state{maintenance_agent_state="unknown"} 1.0' in rec.metrics.render()
    assert b'maintenance_agent_state{maintenance_agent_state="active"} 0.0' in rec.metrics.render()


def test_one_log_line_naming_the_file_and_no_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "state.json").write_bytes(b"null")
    rec, _ = make_reconciler(tmp_path, [Role.WORKER], {Role.WORKER: []})
    for _ in range(5):
        rec.tick()
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "state file unusable" in line]
    assert len(lines) == 1 and str(tmp_path / "state.json") in lines[0]
    assert "Traceback" not in out


def test_confirm_state_reset_keeps_the_file_aside_and_the_agent_resumes(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(b"{truncated")
    journal: list[str] = []
    steps = {Role.WORKER: [RecordingStep("worker-a", Role.WORKER, journal)]}
    rec, published = make_reconciler(tmp_path, [Role.WORKER], steps)
    rec.on_watch_event(read(b"maintenance", 10))
    rec.tick()
    assert published[-1].state == State.UNKNOWN
    message = confirm_reset(path)
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("state.json.unreadable-")]
    assert len(aside) == 1 and aside[0].read_bytes() == b"{truncated" and str(aside[0]) in message
    settle(rec)
    assert rec.state is State.MAINTENANCE and journal == ["apply:worker-a"]
    assert published[-1].state == "maintenance" and published[-1].error is None
    assert sample(rec.metrics, "maintenance_state_file_unreadable") == 0
    assert json.loads(path.read_text())["machine"]["state"] == "maintenance"
    assert confirm_reset(path).endswith("nothing to reset")


def test_confirm_state_reset_command(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(f'[agent]\nnode = "w1"\nroles = ["worker"]\nenvironment = "t"\nstate_dir = "{tmp_path}"\n'
                      '[worker]\nbackend = "command"\nservices = ["svc"]\n[worker.commands.svc]\nstop = "true"\nstart = "true"\nstatus = "true"\n')
    (tmp_path / "state.json").write_bytes(b"null")
    result = CliRunner().invoke(cli, ["confirm-state-reset", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "wrong shape" in result.output and "starts empty" in result.output
    assert json.loads((tmp_path / "state.json").read_text()) == {}


def test_a_good_file_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps(GOOD_MAINTENANCE))
    memory = StateFile(path)
    assert memory.problem is None and memory.get("machine")["state"] == "maintenance"


def test_an_unwritable_state_dir_is_a_typed_error(tmp_path: Path) -> None:
    blocker = tmp_path / "state-dir"
    blocker.mkdir()
    memory = StateFile(blocker / "state.json")
    blocker.rmdir()
    blocker.write_text("")  # the state_dir became a file: unwritable even for root
    with pytest.raises(StateFileUnwritable, match=f"state file {blocker / 'state.json'} cannot be written"):
        memory.put("session", "x")
