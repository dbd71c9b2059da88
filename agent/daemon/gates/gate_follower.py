"""GateFollower: one blocking query on the status key of one box a gate still waits for.

A gate waiting for N boxes cannot open before every one of them settled, so
it is enough to wait on one of them at a time. ``follow(boxes)`` (the boxes
the gate still waits for) starts a round: pick one of them at random, block
on its status key until it changes, re-read the other boxes of the round
(``read_boxes``: one prefix read or a few key reads), remember what was read
and wake the decision thread, which looks again and calls ``follow`` with
what it still waits for. With a random pick a gate costs O(log N) re-reads,
one connection and one thread, whatever N is; and when the last box settles
the follower is already watching it. It blocks from the index at which the
decision thread read each box (``remember``), so a change that lands between
that read and the query returns at once instead of being missed.

When the box followed leaves the set (a release, a new intent) while its
query is in flight, a fresh query starts at once on a fresh thread; the old
one ends when its bounded ``wait`` does (Consul does not cancel a query whose
client went away). At most ``MAX_THREADS`` exist at a time; an old thread
whose query returns takes over when no fresh one could start.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable

from agent.clients.blocking import next_index
from agent.core.model import Status
from agent.core.settings import DEFAULTS, BackoffPolicy, BucketPolicy

MAX_THREADS = 2
Seen = tuple[Status | None, int]  # a box's status and the index to block on it with
ReadBoxes = Callable[[list[str]], dict[str, Seen]]
ReadOne = Callable[[str, int, float], Seen]  # box, index, wait -> what a blocking read returned


class GateFollower:
    def __init__(self, read_boxes: ReadBoxes, read_one: ReadOne, on_change: Callable[[], None], wait: float = 15.0,
                 reconnect: BackoffPolicy = DEFAULTS.consul_reconnect, reads: BucketPolicy = DEFAULTS.gate_follow_reads):
        self.read_boxes = read_boxes
        self.read_one = read_one
        self.on_change = on_change
        self.wait = wait
        self._lock = threading.Lock()
        self._known: dict[str, Seen] = {}
        self._pending: list[str] = []
        self._followed: str | None = None
        self._generation = 0
        self._threads = 0  # alive
        self._current = False  # a thread of the current generation is alive
        self._orphaned = False  # nobody follows the current round: the next old thread to return takes it
        self._stop = threading.Event()
        self._backoff = reconnect.start()
        self._bucket = reads.start()  # a box whose key churns costs a burst, then a bounded rate
        self.rounds = 0  # changes seen (each one re-read of the boxes still waited for)

    # -- what was read -------------------------------------------------------------

    def known(self, boxes: list[str]) -> dict[str, Status | None]:
        with self._lock:
            return {b: self._known[b][0] for b in boxes if b in self._known}

    def remember(self, seen: dict[str, Seen]) -> None:
        with self._lock:
            self._known.update(seen)

    def forget(self) -> None:
        with self._lock:
            self._known.clear()

    # -- rounds ----------------------------------------------------------------------

    def follow(self, boxes: list[str]) -> None:
        """Wake ``on_change`` once one of ``boxes`` changes (empty: stop following)."""
        with self._lock:
            self._pending = list(boxes)
            if self._followed is not None and self._followed not in self._pending:
                self._generation += 1  # the query in flight is on a box no longer waited for
                self._followed, self._current = None, False
            if not self._pending or self._current or self._stop.is_set():
                return
            if self._threads >= MAX_THREADS:
                self._orphaned = True
                return
            self._threads += 1
            self._current = True
            generation = self._generation
        threading.Thread(target=self._run, args=(generation,), name="gate:follow", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self.follow([])

    def _next_box(self, generation: int) -> tuple[int, str] | None:
        """The round's box to block on (and the generation this thread now serves), or None to end the thread."""
        with self._lock:
            if generation != self._generation:
                if not (self._orphaned and self._pending):
                    self._threads -= 1
                    return None
                generation, self._orphaned, self._current = self._generation, False, True
            if self._stop.is_set() or not self._pending:
                self._threads -= 1
                self._current = False
                return None
            if self._followed not in self._pending:
                self._followed = random.choice(self._pending)
            return generation, self._followed

    def _run(self, generation: int) -> None:
        while True:
            picked = self._next_box(generation)
            if picked is None:
                return
            generation, box = picked
            pause = self._bucket.delay()
            if pause and self._stop.wait(pause):
                continue
            try:
                with self._lock:
                    before = self._known.get(box)
                if before is None:
                    # Not what the decision saw (forgotten meanwhile): read it, and let the decision look again.
                    self.remember(self.read_boxes([box]))
                    self._round_over(generation, box)
                    continue
                status, index = self.read_one(box, max(before[1], 1), self.wait)
            except Exception:  # noqa: BLE001 - typed errors expected; nothing may end this watch
                with self._lock:
                    self._known.pop(box, None)
                self._stop.wait(self._backoff.next())
                continue
            self._backoff.reset()
            self.remember({box: (status, next_index(before[1], index))})
            if _gate_fields(status) != _gate_fields(before[0]):
                self._round_over(generation, box)  # a gate-relevant change; a new blocked_on text is not one

    def _round_over(self, generation: int, box: str) -> None:
        """The followed box changed: re-read the others of the round, hand over, wait to be told what to follow."""
        with self._lock:
            if generation != self._generation:
                return
            others = [b for b in self._pending if b != box]
        try:
            self.remember(self.read_boxes(others) if others else {})
        except Exception:  # noqa: BLE001 - forget them: the decision thread reads them directly
            with self._lock:
                for b in others:
                    self._known.pop(b, None)
        with self._lock:
            if generation != self._generation:
                return
            self.rounds += 1
            self._pending, self._followed = [], None  # the decision thread says what it still waits for
        self.on_change()


def _gate_fields(status: Status | None) -> tuple[object, ...] | None:
    return status.gate_fields() if status is not None else None
