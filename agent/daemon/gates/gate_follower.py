"""GateFollower: one blocking query on the status key of one box a gate still waits for.

A gate waiting for N boxes cannot open before every one of them settled, so
it is enough to wait on one of them at a time. ``follow(boxes)`` (the boxes
the gate still waits for) has a *lane* (a thread running the one
blocking-query loop, ``agent.clients.blocking``) pick one of them at random
and block on its status key until it changes in a way a gate reads; then the
lane re-reads the other boxes (``read_boxes``: one prefix read or a few key
reads), remembers what it read, ends the round (the gate waits for nothing
until told again) and wakes the decision thread, which looks again from that
cache and calls ``follow`` with what it still waits for. With a random pick a
gate costs O(log N) rounds and one connection, whatever N is; and when the
last box settles the follower is already blocked on it. A lane blocks from
the index at which the decision thread read the box (``remember``), so a
change that lands between that read and the query returns at once.

Consul does not cancel a query whose client went away, so a lane whose box
is no longer waited for (a release, a new intent) stays blocked until its
bounded ``wait`` ends. Meanwhile a second lane follows the boxes now waited
for; a lane that finds another already following when its query returns
ends. The state, guarded by one lock, is three fields — the boxes waited for,
each lane's box, the cache — and what holds of them is checked on every
change (``_holds``):

- at most ``MAX_LANES`` lanes (threads, connections) exist, whatever the fleet;
- while the gate waits, a lane follows one of the boxes it waits for, or is
  about to pick one, or every lane is busy and the first whose query returns
  takes over: a change is never waited for by nobody.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable

from agent.clients.blocking import QueryFailed, WatchFailures, blocking_answers
from agent.core.errors import MaintenanceAgentError
from agent.core.model import Status
from agent.core.settings import DEFAULTS, BackoffPolicy, BucketPolicy

MAX_LANES = 2
LOOK_AGAIN_SECONDS = 1.0
"""How long a freshly picked box is followed before the other boxes waited for are re-read once."""
Seen = tuple[Status | None, int]  # a box's status and the index to block on it with
ReadBoxes = Callable[[list[str]], dict[str, Seen]]
ReadOne = Callable[[str, int, float], Seen]  # box, index, wait -> what a blocking read returned


class GateFollower:
    def __init__(self, read_boxes: ReadBoxes, read_one: ReadOne, on_change: Callable[[], None], wait: float = 15.0,
                 reconnect: BackoffPolicy = DEFAULTS.consul_reconnect, reads: BucketPolicy = DEFAULTS.gate_follow_reads,
                 failures: WatchFailures | None = None, rng: random.Random | None = None):
        self.read_boxes = read_boxes
        self.read_one = read_one
        self.on_change = on_change
        self.wait = wait
        self.reconnect = reconnect
        self.failures = failures or WatchFailures("gate-follow")
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # notified whenever the lanes or the boxes waited for change
        self._waiting: tuple[str, ...] = ()  # the boxes the gate waits for; () between a round's end and the next follow
        self._lanes: dict[int, str | None] = {}  # each live lane's box (None while it picks one)
        self._known: dict[str, Seen] = {}  # what was read of each box, and the index to block on it from
        self._read_at: dict[str, float] = {}  # when (monotonic) each entry of _known was read
        self._ids = itertools.count()
        self._stop = threading.Event()
        self._rng = rng or random.Random()
        self._bucket = reads.start()  # a box whose key churns costs a burst, then a bounded rate (shared by the lanes)
        self.rounds = 0  # changes seen (each one re-read of the boxes still waited for)

    # -- what was read -------------------------------------------------------------

    def known(self, boxes: list[str], max_age: float | None = None) -> dict[str, Status | None]:
        """What was read of ``boxes`` (no older than ``max_age`` seconds: a box not followed is re-read at that pace)."""
        oldest = time.monotonic() - max_age if max_age is not None else float("-inf")
        with self._lock:
            return {b: self._known[b][0] for b in boxes if b in self._known and self._read_at[b] >= oldest}

    def remember(self, seen: dict[str, Seen]) -> None:
        now = time.monotonic()
        with self._lock:
            self._known.update(seen)
            self._read_at.update(dict.fromkeys(seen, now))

    def forget(self) -> None:
        with self._lock:
            self._known.clear()
            self._read_at.clear()

    def _drop(self, box: str) -> None:
        """Forget what was read of ``box`` (the caller holds the lock): ``_known`` and ``_read_at`` keep the same keys."""
        self._known.pop(box, None)
        self._read_at.pop(box, None)

    # -- what is followed ------------------------------------------------------------

    def follow(self, boxes: list[str]) -> None:
        """Wake ``on_change`` once one of ``boxes`` changes (empty: stop following)."""
        with self._lock:
            self._waiting = tuple(boxes) if not self._stop.is_set() else ()
            lane = self._new_lane() if self._waiting and not self._followed() and len(self._lanes) < MAX_LANES else None
            self._changed_now()
        if lane is not None:
            threading.Thread(target=self._run, args=(lane,), name="gate:follow", daemon=True).start()

    def stop(self) -> None:
        """Follow nothing more; each lane ends when its query returns (within ``wait``)."""
        self._stop.set()
        self.follow([])

    def lanes(self) -> dict[int, str | None]:
        """Each live lane and the box it blocks on (None while it picks one): what the follower costs right now."""
        with self._lock:
            return dict(self._lanes)

    def wait_for_lanes(self, done: Callable[[dict[int, str | None]], bool], timeout: float) -> bool:
        """Wait until ``done(lanes)`` holds (False: ``timeout`` passed first); the tests' way to see lanes start and end."""
        with self._changed:
            return self._changed.wait_for(lambda: done(dict(self._lanes)), timeout)

    def _changed_now(self) -> None:
        """After every change of the state, under the lock: check what must hold, tell whoever waits for the lanes."""
        assert self._holds(), f"waiting for {list(self._waiting)[:5]}, lanes {self._lanes}"
        self._changed.notify_all()

    def _new_lane(self) -> int:
        lane = next(self._ids)
        self._lanes[lane] = None
        return lane

    def _followed(self, besides: int | None = None) -> bool:
        """Whether a lane (other than ``besides``) follows a box the gate waits for, or is about to pick one."""
        return any(box is None or box in self._waiting for lane, box in self._lanes.items() if lane != besides)

    def _holds(self) -> bool:
        """The follower's invariants (see the module's docstring); checked under the lock after every change."""
        return len(self._lanes) <= MAX_LANES and (not self._waiting or self._followed() or len(self._lanes) == MAX_LANES)

    # -- a lane ------------------------------------------------------------------------

    def _run(self, lane: int) -> None:
        while (box := self._pick(lane)) is not None:
            self._follow_box(box)

    def _pick(self, lane: int) -> str | None:
        """The box ``lane`` blocks on next, or None: the lane ends (nothing waited for, or another lane follows)."""
        with self._lock:
            if not self._waiting or self._followed(besides=lane):
                del self._lanes[lane]
                box = None
            else:
                box = self._lanes[lane] = self._rng.choice(self._waiting)
            self._changed_now()
            return box

    def _still_waited(self, box: str) -> bool:
        with self._lock:
            return box in self._waiting

    def _follow_box(self, box: str) -> None:
        """Block on ``box`` until a gate-relevant change (then end the round) or until it is no longer waited for.

        Boxes settle in batches, and the box picked may be the one straggler: the others' changes would then wait for
        the decision's resync, and ``blocked_on`` would name boxes long settled. So the first
        ``LOOK_AGAIN_SECONDS`` are a short query; if ``box`` stayed quiet, the others are re-read once, and a change
        among them ends the round too. One more read per round, whatever the fleet's size.
        """
        with self._lock:
            before = self._known.get(box)
        index = before[1] if before else 0
        outcome, index = self._block_on(box, before, index, deadline=time.monotonic() + LOOK_AGAIN_SECONDS)
        if outcome == "quiet":
            if self._reread_others(box):
                self._end_round(box)  # the others were just read: a change among them ends the round
                return
            outcome, _ = self._block_on(box, before, index, deadline=None)
        if outcome == "changed":
            self._reread_others(box)
            self._end_round(box)

    def _block_on(self, box: str, before: Seen | None, index: int, deadline: float | None) -> tuple[str, int]:
        """Follow ``box`` from ``index``: ``changed`` (gate-relevant, or not read before), ``released`` (no longer
        waited for, or stopped) or ``quiet`` (``deadline`` passed); and the index to go on from."""

        def query(index: int, wait: float | None) -> tuple[int, Seen]:
            seen = self.read_one(box, index, wait or 0.0)
            return seen[1], seen

        for answer in blocking_answers(query, self.wait, stop=self._stop, reads=self._bucket, backoff=self.reconnect.start(),
                                       deadline=deadline, what=f"the status of {box}", failures=self.failures, index=index):
            if isinstance(answer, QueryFailed):
                index = 0  # read afresh, as the loop does after a failure
                with self._lock:
                    self._drop(box)  # stale: the decision thread reads it directly meanwhile
            else:
                index = answer[1]
                self.remember({box: answer})
            if not self._still_waited(box):
                return "released", index
            # Not read before (forgotten meanwhile): let the decision look. A new blocked_on text is no change.
            if not isinstance(answer, QueryFailed) and (before is None or _gate_fields(answer[0]) != _gate_fields(before[0])):
                return "changed", index
        return ("quiet" if not self._stop.is_set() else "released"), index

    def _reread_others(self, box: str) -> bool:
        """Re-read the boxes waited for besides ``box`` into the cache: whether one changed in a way a gate reads.

        On failure it is counted and they are forgotten (the decision thread reads them directly): no change seen."""
        with self._lock:
            others = [b for b in self._waiting if b != box]
            earlier = {b: _gate_fields(self._known[b][0]) for b in others if b in self._known}
        if not others:
            return False
        try:
            self.remember(self.read_boxes(others))
        except Exception as exc:  # noqa: BLE001 - counted and logged; forgotten, the decision thread reads them directly
            self.failures.failed(exc if isinstance(exc, MaintenanceAgentError) else MaintenanceAgentError(f"re-reading statuses: {exc}"))
            with self._lock:
                for b in others:
                    self._drop(b)
            return False
        with self._lock:
            return any(b not in self._known or _gate_fields(self._known[b][0]) != earlier.get(b) for b in others)

    def _end_round(self, box: str) -> None:
        """The gate waits for nothing until told again; wake the decision thread (unless ``box`` was released meanwhile)."""
        with self._lock:
            if box not in self._waiting:
                return  # released or a new intent meanwhile: whoever follows now tells the decision thread
            self.rounds += 1
            self._waiting = ()  # the decision thread says what it still waits for
            self._changed_now()
        self.on_change()


def _gate_fields(status: Status | None) -> tuple[object, ...] | None:
    return status.gate_fields() if status is not None else None
