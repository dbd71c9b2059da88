"""Consul's blocking-query rules, in the one loop every watch uses (the daemon's and ``maintctl``'s).

The rules, from Consul's documentation on blocking queries:

- a query at index 0 returns at once (never block on 0); later queries pass
  the index of the previous answer and a bounded ``wait``;
- the index only moves forward: when it goes backwards (a snapshot restore,
  a new leader's state) start over from 0;
- a return is not a change: the caller compares what it got with what it saw;
- queries are rate-limited (a key that changes all the time must not turn a
  watch into a polling loop), and a failed one is retried after a jittered,
  capped backoff, from index 0 (after an outage, read afresh).

Every watch of the agent runs this loop (the intent, the reporter's own
status key, a waiting gate's membership and the box it follows) and so does
``maintctl``'s fleet follow. A watch's failed queries are told the same way
everywhere (``WatchFailures``): each one counted, a run of them logged once
when it starts and once when it ends, never once per retry.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from agent.core.backoff import Backoff, TokenBucket
from agent.core.errors import MaintenanceAgentError

T = TypeVar("T")

def next_index(previous: int, returned: int) -> int:
    """The index for the next blocking query (Consul's documented rules)."""
    if returned < previous:
        return 0  # went backwards (e.g. a snapshot restore): start over
    return max(returned, 1)  # never block on 0


class WatchFailures:
    """How one watch's failed queries are told: each one ``count``-ed (the agent's
    ``maintenance_watch_errors_total{watch}``), a run of them logged once as it starts and once as it ends.

    Without a ``log`` they are only counted: the intent watch's outage is told by
    the reconciler, as Consul's reachability, with its reminders.
    """

    def __init__(self, watch: str, log: Any = None, count: Callable[[], None] = lambda: None):
        self.watch = watch
        self.log = log
        self.count = count
        self._lock = threading.Lock()  # a watch may run its loop on two threads (the gate follower's hand-over)
        self._run = 0  # failed queries since the last answer

    @property
    def failing(self) -> bool:
        with self._lock:
            return self._run > 0

    def failed(self, error: MaintenanceAgentError) -> None:
        self.count()
        with self._lock:
            self._run += 1
            first = self._run == 1
        if first and self.log is not None:
            self.log.warning("watch failing; retrying with backoff", watch=self.watch, error=str(error))

    def answered(self) -> None:
        with self._lock:
            run, self._run = self._run, 0
        if run and self.log is not None:
            self.log.info("watch recovered", watch=self.watch, failed_queries=run)


@dataclass(frozen=True)
class QueryFailed:
    """A blocking query failed; the loop retries it after a backoff, from index 0."""

    error: MaintenanceAgentError


def blocking_answers(
    query: Callable[[int, float | None], tuple[int, T]],
    wait: float,
    stop: threading.Event | None = None,
    reads: TokenBucket | None = None,
    backoff: Backoff | None = None,
    deadline: float | None = None,
    what: str = "a blocking query",
    failures: WatchFailures | None = None,
    index: int = 0,
) -> Iterator[T | QueryFailed]:
    """Every answer of ``query`` followed by the rules above, until ``stop`` is set or ``deadline`` passes.

    ``reads`` is the budget each query takes from; with a ``backoff`` a failed
    query yields ``QueryFailed`` and is retried (a watch that must outlive
    Consul), without one the error is raised (a command that reports it);
    ``failures`` is told of each failure and of the answer that ends them.
    The first query blocks from ``index`` (0: it returns at once), so a watch
    that starts from what someone else read misses no change made since.
    The first answer comes even when ``deadline`` has already passed. An answer
    (or failure) that returns after ``stop`` was set is not handed on.
    """
    stop = stop or threading.Event()
    answered = False
    while not stop.is_set():
        if deadline is not None and answered and time.monotonic() >= deadline:
            return
        pause = reads.delay() if reads is not None else 0.0
        if pause and stop.wait(pause):
            return
        bounded = wait if deadline is None else max(1.0, min(wait, deadline - time.monotonic()))
        try:
            returned, answer = query(index, bounded if index > 0 else None)
        except Exception as exc:  # typed errors expected; re-raised without a backoff, else nothing may end the watch
            if backoff is None:
                raise
            if stop.is_set():
                return  # stopped while it was in flight: nobody is listening any more
            failure = exc if isinstance(exc, MaintenanceAgentError) else MaintenanceAgentError(f"unexpected {type(exc).__name__} reading {what}: {exc}")
            index = 0  # after an outage, read afresh
            if failures is not None:
                failures.failed(failure)
            yield QueryFailed(failure)
            stop.wait(backoff.next())
            continue
        if stop.is_set():
            return
        if backoff is not None:
            backoff.reset()
        if failures is not None:
            failures.answered()
        index = next_index(index, returned)
        answered = True
        yield answer
