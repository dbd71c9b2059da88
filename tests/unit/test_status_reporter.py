"""StatusReporter: its watch on its own key tells its own writes from a lost key."""

from __future__ import annotations

from pathlib import Path

import structlog

from agent.daemon.local.statefile import StateFile
from agent.daemon.reporting.reporter import StatusReporter
from tests.fakes import FakeGateway, read


def reporter(tmp_path: Path) -> StatusReporter:
    return StatusReporter(FakeGateway(), "maintenance/prod/status/web-1", service_id="maintenance-agent:prod:web-1", tags=[], meta={},
                          memory=StateFile(tmp_path / "state.json"), log=structlog.get_logger(), health_url="http://127.0.0.1:9/healthz")


def test_a_write_seen_by_the_watch_before_its_put_returns_is_ours(tmp_path: Path) -> None:
    """Under load the blocking query on the key often returns before the PUT's answer: that must not look like a
    lost session (which would verify the session and write the same status again: three requests instead of one)."""
    status = reporter(tmp_path)
    status._writing = '{"state": "entering"}'  # the PUT in flight
    status._on_own_key(read(b'{"state": "entering"}', 21))
    assert not status.keeper._suspect and not status._wake.is_set()


def test_a_value_nobody_of_ours_wrote_is_noticed(tmp_path: Path) -> None:
    status = reporter(tmp_path)
    status._written = '{"state": "maintenance"}'
    status._on_own_key(read(b'{"state": "active"}', 22))  # someone wrote our key by hand
    assert status.keeper._suspect and status._wake.is_set()
