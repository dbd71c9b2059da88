"""maintctl status at fleet scale: one row per role, problem boxes by name, every box behind --full."""

from __future__ import annotations

from datetime import UTC, datetime

from agent.core.model import Intent, Member, Mode, State, Status
from agent.ops.fleet import FleetReader, FleetSnapshot
from agent.ops.summary import summarize
from agent.ops.views import dry_run_view, status_view
from tests.fakes import FakeGateway

NOW = datetime(2026, 12, 2, 21, 0, tzinfo=UTC)


def fleet_of(workers: int) -> tuple[FakeGateway, int]:
    members = [Member(box="edge-1", roles=("edge",), consul_node="edge-1", alive=True),
               *(Member(box=f"worker-{i:04d}", roles=("worker",), consul_node=f"w{i}", alive=i != 7) for i in range(workers))]
    gw = FakeGateway(members=members)
    assert gw.put_key("maintenance/prod/desired", "maintenance")
    index = gw.kv["maintenance/prod/desired"][1]

    def report(node: str, roles: tuple[str, ...], state: str, **extra: object) -> None:
        status = Status(node=node, roles=roles, state=State(state), intent_index=index, since=NOW, progress={r: state for r in roles}, **extra)
        gw.kv[f"maintenance/prod/status/{node}"] = (status.to_json().encode(), 1)

    report("edge-1", ("edge",), "maintenance")
    for i in range(workers):
        if i == 3:
            continue  # silent: no status key at all
        if i == 5:
            report(f"worker-{i:04d}", ("worker",), "entering", error="worker-services: systemctl stop billing timed out")
        elif i < 100:
            report(f"worker-{i:04d}", ("worker",), "maintenance")
        else:
            report(f"worker-{i:04d}", ("worker",), "entering", blocked_on="gate worker: waiting for web-1")
    return gw, index


def render(snapshot: FleetSnapshot, full: bool | None = None) -> str:
    return status_view(snapshot, NOW, UTC, width=200, full=full)


def test_a_thousand_boxes_are_summed_up_per_role_with_the_problem_boxes_named() -> None:
    gw, _ = fleet_of(999)
    snapshot = FleetReader(gw, "maintenance", "prod").read()
    by_role = {s.role: s for s in summarize(snapshot)}
    assert by_role["edge"].counts == {"settled": 1, "moving": 0, "blocked": 0, "failing": 0, "dead": 0}
    workers = by_role["worker"].counts
    assert workers == {"settled": 97, "moving": 0, "blocked": 899, "failing": 1, "dead": 2}  # 3 silent, 7 registered but down
    assert by_role["worker"].named["dead"] == ["worker-0003", "worker-0007"] and by_role["worker"].named["failing"] == ["worker-0005"]
    text = render(snapshot)
    assert len(text.splitlines()) < 15  # a row per role, not per box
    assert "dead: worker-0003, worker-0007" in text and "failing: worker-0005" in text and "+891 more" in text
    assert "worker-0500" not in text


def test_a_small_fleet_and_full_show_every_box() -> None:
    gw, _ = fleet_of(6)
    small = FleetReader(gw, "maintenance", "prod").read()
    assert "worker-0004" in render(small)  # six boxes: the table of every box, as before
    gw, _ = fleet_of(200)
    assert "worker-0150" in render(FleetReader(gw, "maintenance", "prod").read(), full=True)


def test_the_dry_run_of_a_thousand_boxes_is_a_row_per_role_with_the_silent_ones_named() -> None:
    gw, _ = fleet_of(999)
    snapshot = FleetReader(gw, "maintenance", "prod").read()
    text = dry_run_view(snapshot, Intent(mode=Mode.ACTIVE, release=("worker-0009",)), UTC, width=200)
    assert len(text.splitlines()) < 15 and "worker-0500" not in text
    worker_row = next(line for line in text.splitlines() if " worker " in line)
    # 999 workers: 1 released; the other 998 will go active, of which the silent worker-0003 will block, named
    cells = worker_row.split()
    assert cells == ["1", "worker", "999", "998", "0", "1", "worker-0003"], cells
