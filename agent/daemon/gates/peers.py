"""PeerView: what the gates need to know about the other boxes, read from Consul, at a cost that does not grow with the fleet.

``members()`` is the environment's registered boxes, ``snapshot()`` the status
of the boxes a gate needs. Two watches serve a waiting gate, whatever the
fleet's size: one blocking query on the membership, and one on the status key
of *one* box the gate still waits for (``GateFollower``). A gate can only
open once every box it waits for settled, so while the followed box has not,
nothing else can open it; when the followed box's key changes, the follower
re-reads the other boxes still waited for (one prefix read when very many are,
read-only transactions of 64 keys when fewer are), wakes the decision thread, and then follows
one of the boxes the gate still waits for. Picking that box at random makes
the number of re-reads per gate grow like log(boxes), not like the boxes;
and when the last box settles the follower is already watching it.

Statuses read while a gate waits are cached, so re-evaluating a gate costs
Consul nothing. Nothing is watched outside a gate: an idle box is not woken
by other boxes' status writes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterable

from agent.clients.blocking import QueryFailed, WatchFailures, blocking_answers
from agent.clients.consul import ConsulGateway
from agent.core.model import Member, Status
from agent.core.settings import DEFAULTS, Settings
from agent.daemon.gates.gate_follower import GateFollower, Seen


def parse_status(raw: bytes | None) -> Status | None:
    """A status key's value, or None when missing or unreadable (which blocks a gate)."""
    if raw is None:
        return None
    try:
        return Status.from_json(raw)
    except (ValueError, TypeError):
        return None


class PeerView:
    def __init__(self, gateway: ConsulGateway, environment: str, status_prefix: str, wake: Callable[[], None], wait: float = 60.0,
                 prefix_read_above: int = 256, settings: Settings = DEFAULTS, node: str = "",
                 failures: Callable[[str], WatchFailures] = WatchFailures, refresh: float | None = None):
        """``refresh``: the oldest a cached status of a box the follower does not block on may be when a gate reads it
        (the decision thread's resync): the gate is opened by the follower, but what ``blocked_on`` names stays that fresh."""
        self.gateway = gateway
        self.node = node  # this box: always part of a filtered membership (a gate checks it is registered)
        self.settings = settings
        self.environment = environment
        self.status_prefix = status_prefix.rstrip("/") + "/"
        self.wake = wake
        self.wait = wait
        self.refresh = refresh
        # More boxes than this to (re-)read: one read of the whole status prefix, else transactions of 64 keys.
        self.prefix_read_above = prefix_read_above
        self._lock = threading.Lock()
        self._gating = False  # between watch() and unwatch(): what was read is cached and followed
        self._members: list[Member] | None = None  # what the membership watch saw last ...
        self._members_for: frozenset[str] | None = None  # ... for these roles (None: every box)
        self._wanted: frozenset[str] | None = None  # the roles the last gate asked for: what the watch follows
        self._members_thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.membership_failures = failures("membership")
        # A bounded wait: a query Consul does not cancel (its box no longer followed) ends soon.
        self.follower = GateFollower(self._read_boxes, self._read_one, self.wake, wait=min(wait, 15.0),
                                     reconnect=settings.consul_reconnect, reads=settings.gate_follow_reads,
                                     failures=failures("gate-follow"))
        self.bucket = settings.gate_direct_reads.start()

    def read_budget(self) -> float:
        """0 when a gate may read Consul now, else seconds until it may.

        Free while the watches serve the gate from their cache; otherwise it
        takes from the budget of direct reads.
        """
        with self._lock:
            if self._gating and self._members is not None and self._members_for == self._wanted:
                return 0.0
        return self.bucket.try_take()

    def status_key(self, box: str) -> str:
        return self.status_prefix + box

    def members(self, roles: Collection[str] | None = None) -> list[Member]:
        """The registered boxes; with ``roles`` only those holding one of them, and this box (Consul filters them)."""
        wanted = frozenset(roles) if roles is not None else None
        with self._lock:
            if wanted is not None:
                self._wanted = wanted
            if self._members is not None and self._members_for == wanted:
                return list(self._members)
        return self.gateway.members(self.environment, roles=wanted, box=self.node)[1]

    def snapshot(self, boxes: Iterable[str]) -> dict[str, Status | None]:
        boxes = list(boxes)
        with self._lock:
            gating = self._gating
        out = self.follower.known(boxes, self.refresh) if gating else {}
        missing = [b for b in boxes if b not in out]
        if missing:
            read = self._read_boxes(missing)
            # Always remembered with the index it was read at: a gate that then
            # waits blocks from exactly what it decided on, so no change is missed.
            self.follower.remember(read)
            out.update({box: status for box, (status, _) in read.items()})
        return {b: out[b] for b in boxes}

    def watch(self, boxes: Iterable[str]) -> None:
        """Wake the decision thread once one of ``boxes`` (what the gate still waits for) changes, or the membership does."""
        with self._lock:
            self._gating = True
            start_members = self._members_thread is None and not self._stop.is_set()
            if start_members:
                self._members_thread = threading.Thread(target=self._watch_members, name="gate:members", daemon=True)
        if start_members and self._members_thread is not None:
            self._members_thread.start()
        self.follower.follow(sorted(set(boxes)))

    def unwatch(self) -> None:
        """Stop following (the queries in flight end within their wait) and forget what was read."""
        with self._lock:
            self._gating = False
        self.follower.follow([])
        self.follower.forget()

    def stop(self) -> None:
        self._stop.set()
        self.unwatch()
        self.follower.stop()

    def _read_boxes(self, boxes: list[str]) -> dict[str, Seen]:
        """Each box's status and the index to block on it with.

        One key: one read. Up to ``prefix_read_above`` keys: read-only transactions of 64 keys, whose answer is
        what was asked for (a worker's gate reads the 42 edge and web boxes, not the 950 workers' statuses too).
        More: one read of the whole status prefix, which then is mostly what was asked for anyway.
        """
        if len(boxes) > self.prefix_read_above:
            index, items = self.gateway.read_prefix(self.status_prefix)
            found = {box: items.get(self.status_key(box)) for box in boxes}
            return {box: (parse_status(item.value) if item else None, index) for box, item in found.items()}
        if len(boxes) == 1:
            return {boxes[0]: self._read_one(boxes[0], 0, 0.0)}
        read = self.gateway.read_keys([self.status_key(box) for box in boxes])
        return {box: (parse_status(item.value), item.index) for box in boxes for item in [read[self.status_key(box)]]}

    def _read_one(self, box: str, index: int, wait: float) -> Seen:
        read = self.gateway.get_key(self.status_key(box), index=index, wait=wait or None)
        return parse_status(read.value), read.index

    def _watch_members(self) -> None:
        """The membership of the roles the gate reads, while a gate waits (an idle box costs Consul nothing here).

        One run of the blocking-query loop per set of roles: when the next gate reads other roles, the run ends
        after its query returns (a bounded wait) and a new one starts from index 0.
        """
        backoff, bucket = self.settings.consul_reconnect.start(), self.settings.membership_reads.start()
        while True:
            gating, following = self._roles_to_follow()
            if not gating:
                return

            def query(index: int, wait: float | None, roles: frozenset[str] | None = following) -> tuple[int, list[Member]]:
                return self.gateway.members(self.environment, index=index, wait=wait, roles=roles, box=self.node)

            # A bounded wait: when the next gate reads other roles, the query in flight ends soon.
            for answer in blocking_answers(query, min(self.wait, 15.0), stop=self._stop, reads=bucket, backoff=backoff,
                                           what="the membership", failures=self.membership_failures):
                self._saw_members(following, None if isinstance(answer, QueryFailed) else answer)
                with self._lock:
                    if self._stop.is_set() or not self._gating or self._wanted != following:
                        break

    def _roles_to_follow(self) -> tuple[bool, frozenset[str] | None]:
        """Whether a gate waits, and the roles it reads (None: every box); when none waits the watch ends, and forgets."""
        with self._lock:
            if self._stop.is_set() or not self._gating:
                self._members, self._members_for, self._members_thread = None, None, None
                return False, None
            return True, self._wanted

    def _saw_members(self, roles: frozenset[str] | None, members: list[Member] | None) -> None:
        """What the membership watch read for ``roles`` (None: its query failed, read directly until it is back)."""
        with self._lock:
            changed = (members is not None and self._members is not None and self._members_for == roles
                       and set(members) != set(self._members))
            self._members, self._members_for = (members, roles) if self._gating and members is not None else (None, None)
        if changed:
            self.follower.forget()  # a box died, came back or left: read its status afresh
            self.wake()
