"""PeerView's membership watch: it serves a waiting gate from one blocking query, wakes the gate when the
membership changes, and tells its failures (counted each time, logged once) — through the one blocking loop.

The fake Consul blocks a membership query like Consul does, and says when one is blocked; no test sleeps.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterator
from dataclasses import replace

import pytest

from agent.clients.blocking import WatchFailures
from agent.core.errors import ConsulUnavailable
from agent.core.model import Member
from agent.core.settings import DEFAULTS, BackoffPolicy
from agent.daemon.gates.peers import PeerView
from tests.fakes import FakeGateway, RecordingLog

DEADLINE = 10.0
QUICK = replace(DEFAULTS, consul_reconnect=BackoffPolicy(base=0.01, cap=0.02))


class BlockingMembers(FakeGateway):
    """Membership queries with an index block until the membership changes (or a failure is injected)."""

    def __init__(self, members: list[Member]):
        super().__init__(members=members)
        self.cond = threading.Condition()
        self.blocked = 0  # membership queries blocked right now
        self.failures: list[Exception] = []
        self.closed = False

    def members(self, environment: str, index: int = 0, wait: float | None = None,
                roles: Collection[str] | None = None, box: str = "") -> tuple[int, list[Member]]:
        with self.cond:
            if index > 0:
                self.blocked += 1
                self.cond.notify_all()
                try:
                    self.cond.wait_for(lambda: self.closed or self.failures or self.index > index, timeout=wait)
                finally:
                    self.blocked -= 1
                    self.cond.notify_all()
            if self.failures:
                raise self.failures.pop(0)
        return super().members(environment, index, wait, roles, box)

    def change(self, member: Member | None = None, failure: Exception | None = None) -> None:
        with self.cond:
            if member is not None:
                self.members_list.append(member)
                self.index += 1
            if failure is not None:
                self.failures.append(failure)
            self.cond.notify_all()

    def wait_blocked(self) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: self.blocked > 0 and not self.failures, timeout=DEADLINE), "no membership query blocked"

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()


@pytest.fixture
def fleet() -> Iterator[tuple[BlockingMembers, PeerView, RecordingLog, threading.Event]]:
    gateway = BlockingMembers([Member("w1", ("worker",), "w1", True), Member("web-1", ("web",), "web-1", True)])
    log, woken = RecordingLog(), threading.Event()
    peers = PeerView(gateway, "prod", "maintenance/prod/status", wake=woken.set, settings=QUICK, node="w1",  # type: ignore[arg-type]
                     failures=lambda watch: WatchFailures(watch, log, log.inc) if watch == "membership" else WatchFailures(watch))
    try:
        yield gateway, peers, log, woken
    finally:
        peers.stop()
        gateway.close()


def boxes(members: list[Member]) -> list[str]:
    return sorted(m.box for m in members)


def test_a_waiting_gate_reads_the_membership_from_its_watch(fleet: tuple[BlockingMembers, PeerView, RecordingLog, threading.Event]) -> None:
    gateway, peers, _, woken = fleet
    assert boxes(peers.members(["web"])) == ["w1", "web-1"]  # no gate waits yet: read directly
    peers.snapshot(["web-1"])  # what the gate decided on: the follower blocks from it, so only a change wakes the gate
    peers.watch(["web-1"])
    gateway.wait_blocked()
    asked = gateway.calls["members"]
    assert boxes(peers.members(["web"])) == ["w1", "web-1"] and gateway.calls["members"] == asked, "served from the watch"
    assert peers.read_budget() == 0.0
    woken.clear()
    gateway.change(Member("web-2", ("web",), "web-2", True))  # a box registered
    assert woken.wait(DEADLINE), "a membership change wakes the gate"
    gateway.wait_blocked()
    assert boxes(peers.members(["web"])) == ["w1", "web-1", "web-2"]


def test_its_failures_are_counted_each_time_and_logged_once(fleet: tuple[BlockingMembers, PeerView, RecordingLog, threading.Event]) -> None:
    gateway, peers, log, _ = fleet
    peers.members(["web"])
    peers.watch(["web-1"])
    gateway.wait_blocked()
    gateway.change(failure=ConsulUnavailable("down"))
    gateway.change(failure=ConsulUnavailable("still down"))
    gateway.wait_blocked()  # failed twice, retried after a backoff, blocking again
    assert log.count == 2
    assert log.events() == ["watch failing; retrying with backoff", "watch recovered"]
    assert all(fields["watch"] == "membership" for _, _, fields in log.lines)


def test_when_no_gate_waits_the_watch_ends_and_reads_are_direct_again(
        fleet: tuple[BlockingMembers, PeerView, RecordingLog, threading.Event]) -> None:
    gateway, peers, _, _ = fleet
    peers.members(["web"])
    peers.watch(["web-1"])
    gateway.wait_blocked()
    peers.unwatch()
    gateway.change(Member("web-3", ("web",), "web-3", True))  # the query returns; nobody waits: the watch ends
    with gateway.cond:
        assert gateway.cond.wait_for(lambda: gateway.blocked == 0, timeout=DEADLINE)
    asked = gateway.calls["members"]
    assert "web-3" in boxes(peers.members(["web"])) and gateway.calls["members"] == asked + 1, "read directly"


def test_a_gate_that_named_no_roles_is_served_every_box(fleet: tuple[BlockingMembers, PeerView, RecordingLog, threading.Event]) -> None:
    gateway, peers, _, _ = fleet
    peers.watch(["web-1"])  # no roles asked for yet: the watch reads every registered box
    gateway.wait_blocked()
    asked = gateway.calls["members"]
    assert boxes(peers.members()) == ["w1", "web-1"] and gateway.calls["members"] == asked, "served from the watch"
