"""ChangeTracker: a phase change, a box's failure as it appears, changes and clears; an unchanged error said once."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from agent.clients.consul import Member
from agent.ops.fleet import FleetReader, FleetSnapshot
from agent.ops.follow import ChangeTracker
from tests.fakes import FakeGateway

NOW = datetime(2026, 11, 25, 21, 0, tzinfo=UTC)


def _snapshot(boxes: dict[str, tuple[str, str, str | None]]) -> FleetSnapshot:
    """boxes: node -> (role, state, error), all on intent 11 (maintenance)."""
    gw = FakeGateway(members=[Member(box=n, roles=(r,), consul_node=n, alive=True) for n, (r, _, _) in boxes.items()])
    gw.kv["maintenance/prod/desired"] = (b'{"mode": "maintenance"}', 11)
    for node, (role, state, error) in boxes.items():
        gw.kv[f"maintenance/prod/status/{node}"] = (json.dumps({
            "node": node, "roles": [role], "state": state, "intent_index": 11, "since": NOW.isoformat(),
            "error": error, "progress": {role: state}}).encode(), 12)
    return FleetReader(gw, "maintenance", "prod").read()  # type: ignore[arg-type]


def test_changes_follow_the_fleet() -> None:
    tracker = ChangeTracker()
    failing = "worker-services: stop svc: exited with 7: Access is denied"
    steps = [
        ({"web-1": ("web", "entering", None), "worker-1": ("worker", "active", None)}, [("phase", "entering: web 0/1, worker 0/1")]),
        ({"web-1": ("web", "maintenance", None), "worker-1": ("worker", "entering", failing)},
         [("phase", "entering: web done, worker 0/1"), ("failed", "worker-1 [worker] worker-services: stop svc: exited with 7: Access is denied")]),
        ({"web-1": ("web", "maintenance", None), "worker-1": ("worker", "entering", failing)}, []),  # said once
        ({"web-1": ("web", "maintenance", None), "worker-1": ("worker", "entering", "worker-services: timed out")},
         [("failed", "worker-1 [worker] worker-services: timed out")]),
        ({"web-1": ("web", "maintenance", None), "worker-1": ("worker", "maintenance", None)},
         [("phase", "maintenance"), ("recovered", "worker-1 [worker] worker-services: no longer failing")]),
    ]
    for boxes, expected in steps:
        assert [(c.kind, c.text) for c in tracker.update(_snapshot(boxes), NOW)] == expected
    assert tracker.failing == {}
