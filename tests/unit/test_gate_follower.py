"""GateFollower against an in-memory store with real blocking reads: few rounds, no lost wake-up, quick hand-over.

No test sleeps to let a thread get somewhere: the store says which reads are blocked and from which index
(``wait_blocked``), the follower says which lanes live (``wait_for_lanes``), and the decision thread's wake-up is
an event. A broken invariant of the follower raises in its thread, which fails the test (``pytestmark``).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from agent.clients.blocking import WatchFailures
from agent.core.errors import ConsulUnavailable
from agent.core.model import State, Status
from agent.core.settings import BackoffPolicy
from agent.daemon.gates.gate_follower import MAX_LANES, GateFollower, Seen
from tests.fakes import RecordingLog

pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")

SINCE = datetime(2026, 1, 1, tzinfo=UTC)
DEADLINE = 10.0  # generous: only a broken follower ever waits this long
QUICK_RETRY = BackoffPolicy(base=0.01, cap=0.02)


def status(state: str, blocked_on: str | None = None) -> Status:
    return Status(node="x", roles=("worker",), state=State(state), intent_index=1, since=SINCE, progress={"worker": state},
                  blocked_on=blocked_on)


class BlockingStore:
    """Box -> (status, modify index); ``read_one`` blocks like a Consul blocking query on one key, and says so."""

    def __init__(self, boxes: list[str]):
        self.index = 1
        self.values: dict[str, Seen] = {b: (status("entering"), 1) for b in boxes}
        self.cond = threading.Condition()
        self.reads = 0  # boxes read by read_boxes
        self.blocked: list[tuple[str, int]] = []  # (box, index) of each read blocked right now
        self.failures: list[Exception] = []  # raised by the next read_one calls
        self.closed = False
        self.woken = False  # the follower's on_change

    def set(self, box: str, value: str, blocked_on: str | None = None) -> None:
        with self.cond:
            self.index += 1
            self.values[box] = (status(value, blocked_on), self.index)
            self.cond.notify_all()

    def read_boxes(self, boxes: list[str]) -> dict[str, Seen]:
        with self.cond:
            self.reads += len(boxes)
            return {b: self.values[b] for b in boxes}

    def read_one(self, box: str, index: int, wait: float) -> Seen:
        with self.cond:
            if self.failures:
                raise self.failures.pop(0)
            entry = (box, index)
            self.blocked.append(entry)
            self.cond.notify_all()
            try:
                self.cond.wait_for(lambda: self.closed or self.values[box][1] > index, timeout=wait)
                return self.values[box]
            finally:
                self.blocked.remove(entry)
                self.cond.notify_all()

    def wake(self) -> None:
        with self.cond:
            self.woken = True
            self.cond.notify_all()

    def take_wake(self) -> bool:
        with self.cond:
            woken, self.woken = self.woken, False
            return woken

    def up_to_date(self, box: str) -> bool:
        """A read is blocked on ``box`` from its current index: a change of ``box`` will be seen."""
        return any(b == box and i >= self.values[box][1] for b, i in self.blocked)

    def wait_until(self, what: str, condition: Callable[[], bool]) -> None:
        with self.cond:
            assert self.cond.wait_for(condition, timeout=DEADLINE), f"not within {DEADLINE}s: {what}; blocked: {self.blocked}"

    def wait_blocked(self, box: str) -> None:
        self.wait_until(f"a read blocked on {box}", lambda: self.up_to_date(box))

    def wait_woken(self) -> None:
        self.wait_until("the decision thread woken", lambda: self.woken)
        self.take_wake()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()


@pytest.fixture
def make() -> Iterator[Callable[..., tuple[BlockingStore, GateFollower]]]:
    made: list[tuple[BlockingStore, GateFollower]] = []

    def build(boxes: list[str], failures: WatchFailures | None = None, wait: float = 30.0) -> tuple[BlockingStore, GateFollower]:
        store = BlockingStore(boxes)
        follower = GateFollower(store.read_boxes, store.read_one, store.wake, wait=wait, reconnect=QUICK_RETRY, failures=failures,
                                rng=random.Random(7))
        made.append((store, follower))
        return store, follower

    yield build
    for store, follower in made:
        follower.stop()
        store.close()  # the queries in flight return at once
        assert follower.wait_for_lanes(lambda lanes: not lanes, DEADLINE), f"lanes left after stop: {follower.lanes()}"


def test_a_gate_on_300_boxes_is_woken_when_the_last_settles_after_few_rounds(make: Callable[..., tuple[BlockingStore, GateFollower]]) -> None:
    boxes = [f"w{i}" for i in range(300)]
    store, follower = make(boxes, wait=5.0)
    pending = list(boxes)
    follower.remember(store.read_boxes(pending))

    def look_again() -> None:
        """The decision thread: what it still waits for, from the follower's cache; follow that."""
        nonlocal pending
        known = follower.known(pending)
        pending = [b for b in pending if (s := known.get(b)) is None or s.state is not State.MAINTENANCE]
        follower.follow(pending)

    def quiet() -> bool:
        """Woken, or blocked on a waited-for box from its current index: every change so far has been seen."""
        return store.woken or any(store.up_to_date(b) for b in pending)

    follower.follow(pending)
    order = list(boxes)
    random.Random(11).shuffle(order)  # not the follower's seed: its first pick would be the last box to settle
    for box in order:
        store.wait_until("the follower blocked or the decision woken", quiet)
        store.set(box, "maintenance")
        store.wait_until("the follower blocked or the decision woken", quiet)
        while store.take_wake():
            look_again()
            if pending:
                store.wait_until("the follower blocked or the decision woken", quiet)
    assert pending == [], f"{len(pending)} boxes still seen waiting"
    assert follower.rounds <= 20, follower.rounds  # about log(300) (8 with these seeds), not 300
    assert store.reads < 300 * 5, "each round re-reads only the boxes still waited for"


def test_when_the_followed_box_is_no_longer_waited_for_another_is_followed_at_once(
        make: Callable[..., tuple[BlockingStore, GateFollower]]) -> None:
    store, follower = make(["a", "b"])
    follower.remember(store.read_boxes(["a", "b"]))
    follower.follow(["a"])
    store.wait_blocked("a")  # a will not change (a dead box, say)
    follower.follow(["b"])  # a was released: the gate now waits for b only
    store.wait_blocked("b")  # a second lane, while a's query is still in flight
    assert sorted(box or "" for box in follower.lanes().values()) == ["a", "b"]
    store.set("b", "maintenance")
    store.wait_woken()
    store.set("a", "active")  # a's query returns: nobody waits for a, so its lane ends
    assert follower.wait_for_lanes(lambda lanes: not lanes, DEADLINE), follower.lanes()


def test_with_every_lane_busy_the_first_to_return_takes_the_gate_over(make: Callable[..., tuple[BlockingStore, GateFollower]]) -> None:
    store, follower = make(["a", "b", "c"])
    follower.remember(store.read_boxes(["a", "b", "c"]))
    follower.follow(["a"])
    store.wait_blocked("a")
    follower.follow(["b"])
    store.wait_blocked("b")
    follower.follow(["c"])  # both lanes blocked on boxes nobody waits for: no third connection
    assert len(follower.lanes()) == MAX_LANES and "c" not in follower.lanes().values()
    store.set("a", "entering", blocked_on="only text")  # a's query returns: its lane takes c over
    store.wait_blocked("c")
    store.set("c", "maintenance")
    store.wait_woken()
    assert follower.rounds == 1


def test_a_change_between_the_decisions_read_and_the_query_is_not_missed(make: Callable[..., tuple[BlockingStore, GateFollower]]) -> None:
    store, follower = make(["a"])
    follower.remember(store.read_boxes(["a"]))  # the decision saw a entering ...
    store.set("a", "maintenance")  # ... a settles before the gate starts following it
    follower.follow(["a"])
    store.wait_woken()  # the follower blocked from the decision's index, so the query returned at once
    assert follower.known(["a"])["a"].state is State.MAINTENANCE
    assert follower.rounds == 1


def test_a_box_forgotten_meanwhile_is_read_and_the_decision_looks_again(make: Callable[..., tuple[BlockingStore, GateFollower]]) -> None:
    store, follower = make(["a"])
    follower.follow(["a"])  # nothing remembered (a membership change made the cache forget)
    store.wait_woken()
    assert follower.known(["a"])["a"].state is State.ENTERING


def test_a_new_blocked_on_text_is_not_a_round(make: Callable[..., tuple[BlockingStore, GateFollower]]) -> None:
    store, follower = make(["a"])
    follower.remember(store.read_boxes(["a"]))
    follower.follow(["a"])
    store.wait_blocked("a")
    store.set("a", "entering", blocked_on="gate worker: waiting for web-1")  # only the text other gates do not read
    store.wait_blocked("a")  # the query returned and blocks again from the new index ...
    assert not store.woken and follower.rounds == 0  # ... without a round
    store.set("a", "maintenance")
    store.wait_woken()
    assert follower.rounds == 1


def test_a_failing_watch_is_counted_every_time_and_logged_once_per_run(make: Callable[..., tuple[BlockingStore, GateFollower]]) -> None:
    log = RecordingLog()
    store, follower = make(["a"], failures=WatchFailures("gate-follow", log, log.inc))
    follower.remember(store.read_boxes(["a"]))
    store.failures = [ConsulUnavailable("down"), ConsulUnavailable("still down"), ConsulUnavailable("down again")]
    follower.follow(["a"])
    store.wait_blocked("a")  # three failures, retried from index 0; the answer is what the decision saw: no round
    assert log.count == 3
    assert log.events() == ["watch failing; retrying with backoff", "watch recovered"]
    assert follower.rounds == 0 and not store.woken
    store.set("a", "maintenance")
    store.wait_woken()


def test_a_failed_re_read_of_the_others_is_counted_and_they_are_forgotten(make: Callable[..., tuple[BlockingStore, GateFollower]]) -> None:
    log = RecordingLog()
    store, follower = make(["a", "b"], failures=WatchFailures("gate-follow", log, log.inc))
    follower.remember(store.read_boxes(["a", "b"]))

    def refuse(boxes: list[str]) -> dict[str, Seen]:
        raise ConsulUnavailable("down")

    follower.read_boxes = refuse
    follower.follow(["a", "b"])
    followed = next(box for box in follower.lanes().values() if box) if follower.wait_for_lanes(
        lambda lanes: any(lanes.values()), DEADLINE) else ""
    store.wait_blocked(followed)
    store.set(followed, "maintenance")
    store.wait_woken()
    other = "b" if followed == "a" else "a"
    assert follower.known([followed, other]) == {followed: store.values[followed][0]}, "the other box is no longer trusted"
    assert log.count == 1 and log.events() == ["watch failing; retrying with backoff"]


def test_stop_ends_every_lane_once_its_query_returns(make: Callable[..., tuple[BlockingStore, GateFollower]]) -> None:
    store, follower = make(["a"])
    follower.remember(store.read_boxes(["a"]))
    follower.follow(["a"])
    store.wait_blocked("a")
    follower.stop()
    follower.follow(["a"])  # a stopped follower starts nothing
    store.set("a", "maintenance")
    assert follower.wait_for_lanes(lambda lanes: not lanes, DEADLINE), follower.lanes()
    assert follower.rounds == 0 and not store.woken


def test_what_was_read_is_known_only_as_long_as_the_caller_allows(make: Callable[..., tuple[BlockingStore, GateFollower]],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A box the follower does not block on is re-read at the decision's pace, so ``blocked_on`` names what is true."""
    _, follower = make(["a", "b"])
    now = [1000.0]
    monkeypatch.setattr("agent.daemon.gates.gate_follower.time.monotonic", lambda: now[0])
    status = Status(node="a", roles=("worker",), state=State.ENTERING, intent_index=5, since=datetime.now(UTC))
    follower.remember({"a": (status, 7)})
    now[0] += 2.0
    follower.remember({"b": (None, 7)})
    assert set(follower.known(["a", "b"])) == {"a", "b"}, "without an age limit everything read is known"
    assert set(follower.known(["a", "b"], max_age=2.0)) == {"a", "b"}
    assert set(follower.known(["a", "b"], max_age=1.5)) == {"b"}, "too old: the caller reads it again"


def test_a_straggler_followed_does_not_hide_the_others_settling(make: Callable[..., tuple[BlockingStore, GateFollower]]) -> None:
    """The box picked never changes (the last to settle) while the other settles: after LOOK_AGAIN_SECONDS the
    others are re-read once and the decision looks again, so its blocked_on names the straggler, not a settled box."""
    store, follower = make(["a", "b"])
    follower.remember(store.read_boxes(["a", "b"]))
    follower.follow(["a", "b"])
    assert follower.wait_for_lanes(lambda lanes: any(lanes.values()), DEADLINE)
    followed = next(box for box in follower.lanes().values() if box)
    other = "b" if followed == "a" else "a"
    store.wait_blocked(followed)
    store.set(other, "maintenance")  # nobody blocks on it
    store.wait_woken()  # by the second look: the followed box never changed
    assert store.values[followed][0].state is State.ENTERING
    assert follower.rounds == 1 and follower.known([other])[other].state is State.MAINTENANCE
