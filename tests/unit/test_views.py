"""The plain-text status and dry-run views: width rules at 80 and 160 columns, each error and drift once, colour only when asked."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from agent.clients.consul import Member
from agent.core.model import Intent, Mode
from agent.ops import views
from agent.ops.fleet import FleetReader, FleetSnapshot
from tests.fakes import FakeGateway

NOW = datetime(2029, 12, 31, 23, 0, tzinfo=UTC)
ERROR = "worker-services: stop svc: `/usr/local/bin/stop-svc` exited with 7: sc stop: Access is denied"
DRIFT = "worker/worker-services: alpha:alpha running"
BOXES = [("edge-1", "edge", "maintenance"), ("web-1.maintenance-long-hostname", "web", "maintenance"),
         ("worker-2-long-hostname.a", "worker", "entering"), ("worker-2-long-hostname.b", "worker", "entering"),
         ("worker-3", "worker", "maintenance")]


def _snapshot() -> FleetSnapshot:
    gw = FakeGateway(members=[Member(box=n, roles=(r,), consul_node=n, alive=n != "edge-1") for n, r, _ in BOXES])
    gw.kv["maintenance/prod/desired"] = (json.dumps({"mode": "maintenance", "reason": "CHG-1234 kernel patch on every box", "by": "alice",
                                                     "ends_at": "2030-01-01T23:00:00+00:00"}).encode(), 11)
    for node, role, state in BOXES:
        gw.put_key(f"maintenance/prod/status/{node}", json.dumps({
            "node": node, "roles": [role], "state": state, "intent_index": 11, "since": "2029-12-31T22:01:02+00:00",
            "error": ERROR if state == "entering" else None, "blocked_on": None, "progress": {role: state},
            "drift": DRIFT if node == "worker-3" else None}))
    return FleetReader(gw, "maintenance", "prod").read()


def _row(text: str, node: str) -> str:
    [line] = [line for line in text.splitlines() if line.split(" ", 1)[0] == node]
    return line


@pytest.mark.parametrize("width", [80, 160])
def test_status_fits_the_width_with_whole_names_states_and_each_problem_once(width: int) -> None:
    text = views.status_view(_snapshot(), NOW, UTC, width)
    assert max(len(line) for line in text.splitlines()) <= width, text
    for node, _, state in BOXES:
        assert state in _row(text, node).split(), text
    assert text.count("Access is denied") == 1 and "error 1" in _row(text, "worker-2-long-hostname.b")
    assert text.count(DRIFT) == 1 and f"drift: {DRIFT} (on worker-3)" in text and "drift" in _row(text, "worker-3")
    assert "DOWN" in _row(text, "edge-1")  # kept as a note when the agent column is dropped
    assert ("2029-12-31 22:01:02" in _row(text, "edge-1")) is (width >= views.WIDE)  # the dates go before anything else
    assert "\x1b[" not in text


def test_a_snapshot_with_reported_drift_is_not_converged_for_the_exit_code() -> None:
    assert _snapshot().verdict() == 1


@pytest.mark.parametrize("width", [40, 80, 160])
def test_the_dry_run_keeps_every_box_name_whole_even_when_too_narrow(width: int) -> None:
    text = views.dry_run_view(_snapshot(), Intent(mode=Mode.ACTIVE, reason="done", by="bob"), UTC, width)
    for node, _, _ in BOXES:
        [row] = [line for line in text.splitlines() if node in line.split()]
        assert "go" in row.split(), text
    assert ("now" in text.splitlines()[1].split()) is (width >= 80)  # the current state is the column to go
    assert "dry run: nothing written" in text


def test_the_notes_wrap_within_their_column_and_colour_only_when_asked() -> None:
    lines = views.table(("node", "notes"), [{"node": "n1", "notes": [("a" * 10, "red"), ("b" * 10, "")]}], width=16, color=False,
                        flexible="notes", flexible_min=10)
    assert lines == ["node  notes", "n1    aaaaaaaaaa", "      bbbbbbbbbb"]
    coloured = views.table(("node",), [{"node": ("n1", "red")}], width=80, color=True)
    assert coloured[1] == "\x1b[31mn1\x1b[0m"
