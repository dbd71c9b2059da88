"""StatusReporter with its SessionKeeper, driven one step at a time (``report_once``) against the FakeGateway,
which keeps Consul's lock and session rules (tests/integration/test_fake_gateway.py holds it to them).

What is tested: its own writes are told from a lost or rewritten key; a lost session is recreated; and the
conflict paths — a key held by this agent's earlier life is taken over, a twin's live session never is.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agent.clients.consul import KeyRead
from agent.core.errors import ConsulPermissionDenied, ConsulUnavailable
from agent.core.model import State, Status
from agent.daemon.local.statefile import StateFile
from agent.daemon.reporting.reporter import StatusReporter
from agent.daemon.watches.watcher import KeyChanged
from tests.fakes import FakeGateway, RecordingLog

KEY = "maintenance/prod/status/web-1"
SINCE = datetime(2026, 1, 1, tzinfo=UTC)


def status(state: State = State.MAINTENANCE, blocked_on: str | None = None) -> Status:
    return Status(node="web-1", roles=("web",), state=state, intent_index=7, since=SINCE, progress={"web": state.value},
                  blocked_on=blocked_on)


class Reporting:
    """A reporter on a fake Consul, with what it logged and the conflicts it reported."""

    def __init__(self, tmp_path: Path, gateway: FakeGateway | None = None, identity: str = "host-a:/var/lib/a"):
        self.gateway = gateway or FakeGateway()
        self.log = RecordingLog()
        self.conflicts: list[str | None] = []
        self.memory = StateFile(tmp_path / "state.json")
        self.reporter = StatusReporter(self.gateway, KEY, service_id="maintenance-agent:prod:web-1", tags=["env:prod"], meta={},  # type: ignore[arg-type]
                                       memory=self.memory, health_url="http://127.0.0.1:9/healthz", log=self.log, identity=identity,
                                       on_conflict=self.conflicts.append)

    def on_key(self) -> str | None:
        read = self.gateway.get_key(KEY)
        return read.value.decode() if read.value is not None else None

    def holder(self) -> str | None:
        return self.gateway.get_key(KEY).session

    def tell_watch(self) -> None:
        """What the own-key watch would report now."""
        self.reporter.on_own_key(KeyChanged(KEY, self.gateway.get_key(KEY)))


def test_a_status_is_written_under_a_session_bound_to_the_healthz_check(tmp_path: Path) -> None:
    box = Reporting(tmp_path)
    box.reporter.publish(status())
    assert box.reporter.report_once() is None  # written: nothing to do until told
    assert box.on_key() == status().to_json() and box.holder() == box.reporter.keeper.session
    check = box.gateway.services["maintenance-agent:prod:web-1"]["check"]
    assert check["HTTP"] == "http://127.0.0.1:9/healthz" and check["Interval"] == "3.75s", "the local agent runs it every TTL/4"
    assert box.gateway.sessions[box.holder() or ""]["Checks"] == ["serfHealth", "maintenance-agent:prod:web-1:alive"]
    assert box.memory.get("session") == box.holder(), "remembered, so the next life can end it"
    before = box.gateway.calls.copy()
    assert box.reporter.report_once() is None and box.gateway.calls == before, "idle: nothing sent"


def test_a_write_seen_by_the_watch_before_its_put_returns_is_ours(tmp_path: Path) -> None:
    """Under load the blocking query on the key often returns before the PUT's answer: that must not look like a
    lost session (which would verify the session and write the same status again: three requests instead of one)."""
    box: Reporting

    class WatchFirst(FakeGateway):
        def put_key(self, key: str, value: bytes | str, cas: int | None = None, acquire: str | None = None, *,
                    release: str | None = None) -> bool:
            written = super().put_key(key, value, cas, acquire, release=release)
            box.tell_watch()  # the watch's answer arrives before the PUT's
            return written

    box = Reporting(tmp_path, WatchFirst())
    box.reporter.publish(status())
    box.reporter.report_once()
    before = box.gateway.calls.copy()
    assert box.reporter.report_once() is None
    assert box.gateway.calls == before, f"our own write was taken for a lost key: {box.gateway.calls - before}"


def test_a_value_nobody_of_ours_wrote_is_noticed_and_rewritten(tmp_path: Path) -> None:
    box = Reporting(tmp_path)
    box.reporter.publish(status())
    box.reporter.report_once()
    box.gateway.put_key(KEY, '{"state": "active"}')  # someone wrote our key by hand (a plain write keeps our lock)
    box.tell_watch()
    box.reporter.report_once()
    assert box.gateway.calls["session_info"] == 1, "the session is verified once"
    assert box.on_key() == status().to_json() and box.holder() == box.reporter.keeper.session


def test_an_answer_older_than_the_last_write_is_not_taken_for_a_loss(tmp_path: Path) -> None:
    """The key vanished and was written again before the watch's answer about the vanishing was handled."""
    box = Reporting(tmp_path)
    box.reporter.publish(status())
    box.reporter.report_once()
    box.reporter.on_own_key(KeyChanged(KEY, KeyRead(index=30, value=None)))  # stale: the key is ours as it is now
    assert box.reporter.session == box.holder() and box.gateway.calls["get_key"] >= 1
    assert box.reporter.report_once() is None
    assert box.gateway.calls["put_key"] == 1 and box.gateway.calls["session_info"] == 0, "no rewrite, no session doubt"


def test_a_lost_session_is_recreated_and_the_status_written_again(tmp_path: Path) -> None:
    box = Reporting(tmp_path)
    box.reporter.publish(status())
    box.reporter.report_once()
    first = box.holder()
    assert first is not None
    box.gateway.end_session(first)  # the check failed, or the local Consul agent restarted: the key went with the session
    box.gateway.services.clear()
    box.tell_watch()
    box.reporter.report_once()
    assert box.on_key() == status().to_json() and box.holder() not in (None, first)
    assert "maintenance-agent:prod:web-1" in box.gateway.services, "registered again first"
    assert "session lost (check failed, or the local Consul agent restarted); creating a new one" in box.log.events("warning")


def test_a_key_held_by_its_own_earlier_life_is_taken_over(tmp_path: Path) -> None:
    """The agent was killed and its state file lost the session's id: the old session (same name) still holds the key."""
    box = Reporting(tmp_path)
    earlier = box.gateway.create_session(box.reporter.session_name, ttl=None)
    box.gateway.put_key(KEY, "the earlier life's status", acquire=earlier)
    box.reporter.publish(status())
    assert box.reporter.report_once() is None
    assert earlier not in box.gateway.sessions, "the earlier life's session is ended"
    assert box.on_key() == status().to_json() and box.holder() == box.reporter.keeper.session
    assert box.reporter.conflict is None and box.conflicts == []


def test_the_session_the_state_file_names_is_ended_before_a_new_one_is_made(tmp_path: Path) -> None:
    box = Reporting(tmp_path)
    earlier = box.gateway.create_session("whatever it was called", ttl=None)
    box.gateway.put_key(KEY, "the earlier life's status", acquire=earlier)
    box.memory.put("session", earlier)
    box.reporter.publish(status())
    box.reporter.report_once()
    assert earlier not in box.gateway.sessions and box.gateway.calls["put_key"] == 2, "one write: the key was free"
    assert box.on_key() == status().to_json()


def test_a_twins_live_session_is_never_ended_and_the_conflict_is_told_once(tmp_path: Path) -> None:
    box = Reporting(tmp_path)
    twin = box.gateway.create_session("maintenance-agent maintenance/prod/status/web-1 host-b:/var/lib/b", ttl=None, node="web-1-clone")
    box.gateway.put_key(KEY, "the twin's status", acquire=twin)
    box.reporter.publish(status())
    assert box.reporter.report_once() == box.reporter.interval, "looked at again calmly"
    assert box.reporter.report_once() == box.reporter.interval
    assert twin in box.gateway.sessions and box.on_key() == "the twin's status" and box.holder() == twin
    conflict = box.reporter.conflict or ""
    assert twin in conflict and "host-b" in conflict and "web-1-clone" in conflict and "same node name" in conflict
    assert box.conflicts == [conflict], "told once, not once per try"
    assert box.log.events("error") == ["status key held by another agent; not taking it over"]

    box.gateway.end_session(twin)  # the twin stopped: its key went with its session
    box.tell_watch()
    assert box.reporter.report_once() is None
    assert box.on_key() == status().to_json() and box.reporter.conflict is None and box.conflicts == [conflict, None]


def test_a_holder_this_agent_may_not_read_is_not_taken_for_its_own(tmp_path: Path) -> None:
    class NodeScopedToken(FakeGateway):
        def session_info(self, session_id: str) -> dict[str, Any] | None:
            if self.sessions.get(session_id, {}).get("Node") != "fake-node":
                raise ConsulPermissionDenied("403 Permission denied", rule='session "web-1-clone" { policy = "read" }')
            return super().session_info(session_id)

    box = Reporting(tmp_path, NodeScopedToken())
    other = box.gateway.create_session(box.reporter.session_name, ttl=None, node="web-1-clone")  # even with our name
    box.gateway.put_key(KEY, "theirs", acquire=other)
    box.reporter.publish(status())
    box.reporter.report_once()
    assert other in box.gateway.sessions and box.on_key() == "theirs"
    assert "a node this agent's token may not read" in (box.reporter.conflict or "")


def test_a_holder_gone_by_the_time_it_is_looked_at_lets_the_next_acquire_through(tmp_path: Path) -> None:
    class EndsWhenAsked(FakeGateway):
        def session_info(self, session_id: str) -> dict[str, Any] | None:
            self.end_session(session_id)  # it ended between our failed acquire and this question
            return super().session_info(session_id)

    box = Reporting(tmp_path, EndsWhenAsked())
    other = box.gateway.create_session("another", ttl=None)
    box.gateway.put_key(KEY, "theirs", acquire=other)
    box.reporter.publish(status())
    assert box.reporter.report_once() is None
    assert box.on_key() == status().to_json() and box.reporter.conflict is None


def test_a_failing_consul_is_logged_once_per_outage_and_retried_with_backoff(tmp_path: Path) -> None:
    class Down(FakeGateway):
        down = 3

        def put_key(self, key: str, value: bytes | str, cas: int | None = None, acquire: str | None = None, *,
                    release: str | None = None) -> bool:
            if self.down:
                self.down -= 1
                raise ConsulUnavailable("Consul at http://fake:8500 unreachable during write")
            return super().put_key(key, value, cas, acquire, release=release)

    box = Reporting(tmp_path, Down())
    box.reporter.publish(status())
    waits = [box.reporter.report_once() for _ in range(3)]
    assert all(w is not None and 0 < w <= 15 / 5 for w in waits), waits  # retries capped at a fifth of the TTL
    assert box.reporter.report_once() is None and box.on_key() == status().to_json()
    assert box.log.events() == ["status report failing; retrying with backoff", "status report recovered"]
    assert box.gateway.calls["session_info"] == 3, "after each failure the session is verified before the next write"


def test_a_chatty_blocked_on_text_draws_on_its_own_budget(tmp_path: Path) -> None:
    box = Reporting(tmp_path)
    box.reporter.publish(status(State.ENTERING))
    box.reporter.report_once()
    texts = 0
    while box.reporter.report_once() is None:  # only the text changes: the chatter budget (a burst of 5)
        texts += 1
        box.reporter.publish(status(State.ENTERING, blocked_on=f"gate web: waiting for {texts} boxes"))
        assert texts < 50, "the chatter budget never ran out"
    box.reporter.publish(status(State.MAINTENANCE))  # a change gates read is written at once all the same
    assert box.reporter.report_once() is None and box.on_key() == status(State.MAINTENANCE).to_json()


def test_flush_waits_for_the_write_and_a_stop_releases_the_key(tmp_path: Path) -> None:
    box = Reporting(tmp_path)
    box.reporter.start()
    try:
        box.reporter.publish(status())
        assert box.reporter.flush(timeout=10)
        assert box.on_key() == status().to_json()
    finally:
        box.reporter.stop(release=True)
    assert box.on_key() is None and box.gateway.sessions == {}, "the session ended, and the key with it"
    assert box.memory.get("session") is None


@pytest.mark.parametrize("read", [KeyRead(index=30, value=None), KeyRead(index=31, value=b"{}", modify_index=31, session="someone")])
def test_the_watch_is_only_trusted_for_exactly_what_was_written(tmp_path: Path, read: KeyRead) -> None:
    box = Reporting(tmp_path)
    box.reporter.publish(status())
    box.reporter.report_once()
    holder = box.holder()
    assert holder is not None
    box.gateway.put_key(KEY, "", release=holder)  # the store as the event says: the key is no longer ours
    if read.value is None:
        box.gateway.delete_key(KEY)
    else:
        box.gateway.put_key(KEY, read.value)
    writes = box.gateway.calls["put_key"]
    box.reporter.on_own_key(KeyChanged(KEY, read))
    box.reporter.report_once()
    assert box.gateway.calls["session_info"] == 1 and box.gateway.calls["put_key"] == writes + 1


def test_an_answer_that_cannot_be_checked_makes_it_write_again_under_the_same_session(tmp_path: Path) -> None:
    """A stale "key gone" answer arrives while Consul fails the re-read (the local agent still settling): the
    reporter cannot tell, so it writes the key again; the session is verified, kept, and no second one is made."""
    box = Reporting(tmp_path)
    box.reporter.publish(status())
    box.reporter.report_once()
    session = box.holder()

    def unavailable(*args: Any, **kwargs: Any) -> KeyRead:
        raise ConsulUnavailable("HTTP 500 rpc error making call: EOF")

    box.gateway.get_key = unavailable  # type: ignore[method-assign]
    box.reporter.on_own_key(KeyChanged(KEY, KeyRead(index=30, value=None)))
    assert box.reporter.session is None, "not known to be on the key any more"
    del box.gateway.get_key  # Consul answers again
    assert box.reporter.report_once() is None
    assert box.reporter.session == box.holder() == session and box.reporter.keeper.session == session
    assert box.gateway.calls["create_session"] == 1 and box.gateway.calls["session_info"] == 1, "verified, not recreated"
    assert box.on_key() == status().to_json()
