"""GateFollower against an in-memory store with real blocking reads: few rounds, no lost wake-up, quick hand-over."""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime

from agent.core.model import State, Status
from agent.daemon.gates.gate_follower import GateFollower

SINCE = datetime(2026, 1, 1, tzinfo=UTC)


def status(state: str, blocked_on: str | None = None) -> Status:
    return Status(node="x", roles=("worker",), state=State(state), intent_index=1, since=SINCE, progress={"worker": state},
                  blocked_on=blocked_on)


class BlockingStore:
    """Box -> (value, modify index); ``read_one`` blocks like a Consul blocking query on one key."""

    def __init__(self, boxes: list[str]):
        self.index = 1
        self.values = {b: (status("entering"), 1) for b in boxes}
        self.cond = threading.Condition()
        self.reads = 0  # boxes read by read_boxes
        self.blocking = 0

    def set(self, box: str, value: str, blocked_on: str | None = None) -> None:
        with self.cond:
            self.index += 1
            self.values[box] = (status(value, blocked_on), self.index)
            self.cond.notify_all()

    def read_boxes(self, boxes: list[str]) -> dict:
        with self.cond:
            self.reads += len(boxes)
            return {b: self.values[b] for b in boxes}

    def read_one(self, box: str, index: int, wait: float) -> tuple:
        with self.cond:
            self.blocking += 1
            self.cond.wait_for(lambda: self.values[box][1] > index, timeout=wait)
            return self.values[box]


def test_a_gate_on_300_boxes_is_woken_when_the_last_settles_after_few_rounds() -> None:
    boxes = [f"w{i}" for i in range(300)]
    store = BlockingStore(boxes)
    woken = threading.Event()
    follower = GateFollower(store.read_boxes, store.read_one, woken.set, wait=5.0)
    pending = list(boxes)
    follower.remember(store.read_boxes(pending))
    follower.follow(pending)
    order = list(boxes)
    random.Random(7).shuffle(order)
    try:
        for n, box in enumerate(order):
            store.set(box, "maintenance")
            if woken.wait(0.002 if n < len(order) - 1 else 2.0):  # the decision thread looks again
                woken.clear()
                known = follower.known(pending)
                pending = [b for b in pending if (s := known.get(b)) is None or s.state is not State.MAINTENANCE]
                follower.follow(pending)
        assert pending == [], f"{len(pending)} boxes still seen waiting"
        assert follower.rounds <= 40, follower.rounds  # about log(300), not 300
    finally:
        follower.stop()


def test_when_the_followed_box_is_no_longer_waited_for_another_is_followed_at_once() -> None:
    store = BlockingStore(["a", "b"])
    woken = threading.Event()
    follower = GateFollower(store.read_boxes, store.read_one, woken.set, wait=30.0)
    try:
        follower.follow(["a"])
        time.sleep(0.2)  # blocked on a, which will not change (a dead box, say)
        follower.follow(["b"])  # a was released: the gate now waits for b only
        time.sleep(0.2)
        store.set("b", "maintenance")
        assert woken.wait(1.0), "a change of b was not seen while a's query was still in flight"
    finally:
        follower.stop()
        store.set("a", "active")  # let the old query return


def test_a_change_between_the_decisions_read_and_the_query_is_not_missed() -> None:
    store = BlockingStore(["a"])
    woken = threading.Event()
    follower = GateFollower(store.read_boxes, store.read_one, woken.set, wait=30.0)
    try:
        follower.remember(store.read_boxes(["a"]))  # the decision saw a entering ...
        store.set("a", "maintenance")  # ... a settles before the gate starts following it
        follower.follow(["a"])
        assert woken.wait(1.0), "the follower blocked on a's new value and would wait for a change that never comes"
        assert follower.known(["a"])["a"].state is State.MAINTENANCE
    finally:
        follower.stop()


def test_a_new_blocked_on_text_is_not_a_round() -> None:
    store = BlockingStore(["a"])
    woken = threading.Event()
    follower = GateFollower(store.read_boxes, store.read_one, woken.set, wait=30.0)
    try:
        follower.remember(store.read_boxes(["a"]))
        follower.follow(["a"])
        time.sleep(0.1)
        store.set("a", "entering", blocked_on="gate worker: waiting for web-1")  # only the text other gates do not read
        assert not woken.wait(0.5) and follower.rounds == 0
        store.set("a", "maintenance")
        assert woken.wait(1.0) and follower.rounds == 1
    finally:
        follower.stop()
