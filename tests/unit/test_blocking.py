"""The one blocking-query loop: Consul's index rules, the read budget, backoff on errors, deadline."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest

from agent.clients.blocking import QueryFailed, WatchFailures, blocking_answers, next_index
from agent.config.schema import from_mapping
from agent.core.errors import ConsulUnavailable
from agent.core.settings import DEFAULTS, BackoffPolicy, BucketPolicy, Settings
from agent.daemon.app import settings_for
from tests.fakes import RecordingLog


class ScriptedQuery:
    """Answers (or raises) from a script and records each (index, wait) it was asked with."""

    def __init__(self, script: list[int | Exception]):
        self.script = list(script)
        self.calls: list[tuple[int, float | None]] = []

    def __call__(self, index: int, wait: float | None) -> tuple[int, str]:
        self.calls.append((index, wait))
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step, f"answer@{step}"


def take(answers: Iterator[object], n: int) -> list[object]:
    return [next(answers) for _ in range(n)]


def test_index_rules() -> None:
    assert next_index(0, 0) == 1  # never block on 0
    assert next_index(5, 9) == 9
    assert next_index(9, 5) == 0  # went backwards: start over
    query = ScriptedQuery([7, 7, 9, 3, 4])
    got = take(blocking_answers(query, wait=30.0), 5)
    assert got == ["answer@7", "answer@7", "answer@9", "answer@3", "answer@4"]
    # index 0 first and never asked to wait; then the returned index; backwards -> 0 again
    assert query.calls == [(0, None), (7, 30.0), (7, 30.0), (9, 30.0), (0, None)]


def test_a_failure_is_retried_from_index_0_after_a_backoff() -> None:
    outage = ConsulUnavailable("down")
    query = ScriptedQuery([5, outage, RuntimeError("bug"), 8])
    backoff = BackoffPolicy(base=0.01, cap=0.02).start(rng=random.Random(1))
    got = take(blocking_answers(query, wait=10.0, backoff=backoff, what="maintenance/t/desired"), 4)
    assert got[0] == "answer@5" and got[3] == "answer@8"
    assert got[1] == QueryFailed(outage)
    assert isinstance(got[2], QueryFailed) and "unexpected RuntimeError reading maintenance/t/desired: bug" in str(got[2].error)
    assert query.calls == [(0, None), (5, 10.0), (0, None), (0, None)]
    assert backoff.failures == 0, "a success resets the backoff"


def test_a_watch_that_starts_from_a_known_index_blocks_at_once() -> None:
    """A watch that follows what someone else read blocks from that index: a change made since returns at once."""
    query = ScriptedQuery([12, 13])
    take(blocking_answers(query, wait=15.0, index=12), 2)
    assert query.calls == [(12, 15.0), (12, 15.0)]


def test_failures_are_counted_each_time_and_logged_once_per_run() -> None:
    log = RecordingLog()
    failures = WatchFailures("membership", log, log.inc)
    query = ScriptedQuery([5, ConsulUnavailable("down"), ConsulUnavailable("down"), ConsulUnavailable("down"), 8, ConsulUnavailable("x"), 9])
    backoff = BackoffPolicy(base=0.001, cap=0.002).start()
    got = take(blocking_answers(query, wait=10.0, backoff=backoff, failures=failures), 7)
    assert [isinstance(a, QueryFailed) for a in got] == [False, True, True, True, False, True, False]
    assert log.count == 4, "every failed query is counted"
    assert [(level, event, fields["watch"]) for level, event, fields in log.lines] == [
        ("warning", "watch failing; retrying with backoff", "membership"), ("info", "watch recovered", "membership")] * 2
    assert not failures.failing


def test_without_a_log_failures_are_only_counted() -> None:
    counted: list[int] = []
    failures = WatchFailures("intent", None, lambda: counted.append(1))
    failures.failed(ConsulUnavailable("down"))
    assert failures.failing and counted == [1]
    failures.answered()
    assert not failures.failing


def test_without_a_backoff_the_error_is_raised() -> None:
    answers = blocking_answers(ScriptedQuery([2, ConsulUnavailable("down")]), wait=5.0)
    assert next(answers) == "answer@2"
    with pytest.raises(ConsulUnavailable):
        next(answers)


def test_the_read_budget_spaces_queries_of_a_churning_key() -> None:
    clock = [0.0]
    bucket = BucketPolicy(capacity=2, rate=4.0).start(clock=lambda: clock[0])
    stop = threading.Event()
    answers = blocking_answers(ScriptedQuery(list(range(1, 10))), wait=5.0, reads=bucket, stop=stop)
    started = time.monotonic()
    take(answers, 4)  # 2 from the burst, then 2 at 4 a second (the fake clock does not move: each waits 0.25 s)
    assert 0.45 < time.monotonic() - started < 2.0


def test_stop_ends_the_loop_and_a_deadline_bounds_wait() -> None:
    stop = threading.Event()
    answers = blocking_answers(ScriptedQuery([1, 2]), wait=5.0, stop=stop)
    assert next(answers) == "answer@1"
    stop.set()
    assert list(answers) == []
    query = ScriptedQuery([1, 2, 3])
    deadline = time.monotonic() + 3.0
    answers = blocking_answers(query, wait=60.0, deadline=deadline)
    take(answers, 2)
    assert query.calls[1][1] is not None and 1.0 <= query.calls[1][1] <= 3.0, "wait is bounded by the deadline"
    past = blocking_answers(ScriptedQuery([1, 2]), wait=60.0, deadline=time.monotonic() - 1)
    assert list(past) == ["answer@1"], "the first answer comes even past the deadline, then nothing"


def test_settings_are_frozen_and_start_what_they_say() -> None:
    with pytest.raises(AttributeError):
        DEFAULTS.step_retry = BackoffPolicy(1, 2)  # type: ignore[misc]
    assert Settings() == DEFAULTS
    report = DEFAULTS.report_retry.capped(15 / 3, 15 / 5)
    assert (report.base, report.cap, report.first_spread) == (0.5, 5.0, 2.0)
    short = DEFAULTS.report_retry.capped(5 / 3, 5 / 5)  # a 5 s session TTL bounds both
    assert (short.cap, short.first_spread) == (5 / 3, 1.0)
    backoff = replace(DEFAULTS.step_retry, cap=4.0).start(rng=random.Random(3))
    delays = [backoff.next() for _ in range(8)]
    assert max(delays) <= 4.0 and delays[0] <= 1.0
    bucket = DEFAULTS.intent_reads.start(clock=lambda: 0.0)
    assert [bucket.delay() for _ in range(11)][-2:] == [0.0, 1.0]  # a burst of 10, then 1 a second


def test_the_config_file_sets_the_step_retry_cap_and_nothing_else() -> None:
    config = from_mapping({"agent": {"roles": ["web"], "environment": "mock", "retry_max_seconds": 7}})
    settings = settings_for(config)
    assert settings.step_retry == BackoffPolicy(base=1.0, cap=7.0)
    assert replace(settings, step_retry=DEFAULTS.step_retry) == DEFAULTS
