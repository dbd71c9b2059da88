"""KeyWatcher: one long-poll on one Consul key, emitting what it sees. It never acts.

It follows Consul's blocking-query rules through ``agent.clients.blocking``
(index rules, bounded ``wait``, capped and jittered backoff on errors, a
token bucket so a key that changes many times a second costs a bounded
number of requests); a return is not a change: it compares the key's
ModifyIndex and value with what it saw.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from agent.clients.blocking import QueryFailed, WatchFailures, blocking_answers
from agent.clients.consul import ConsulGateway, KeyRead
from agent.core.errors import ConsulPermissionDenied
from agent.core.settings import DEFAULTS, BackoffPolicy, BucketPolicy


@dataclass(frozen=True)
class KeyChanged:
    key: str
    read: KeyRead


@dataclass(frozen=True)
class ConsulReachability:
    """Consul became reachable or not; while it stays away, ``reminder`` events say for how long (``down_seconds``)."""

    up: bool
    error: str = ""
    down_seconds: float = 0.0
    reminder: bool = False


REMIND_AFTER = (60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
"""Seconds of outage after which the watcher reminds that Consul is still unreachable; then every last interval."""


@dataclass(frozen=True)
class ReadRefused:
    """Consul answered but refused the read (403): not an outage. ``error`` names the missing ACL rule; None once reads pass again."""

    key: str
    error: str | None


WatchEvent = KeyChanged | ConsulReachability | ReadRefused


class KeyWatcher:
    def __init__(
        self,
        gateway: ConsulGateway,
        key: str,
        on_event: Callable[[WatchEvent], None],
        wait: float = 60.0,
        consistent: bool = False,
        reconnect: BackoffPolicy = DEFAULTS.consul_reconnect,
        reads: BucketPolicy = DEFAULTS.key_reads,
        name: str = "",
        remind_after: tuple[float, ...] = REMIND_AFTER,
        failures: WatchFailures | None = None,
    ):
        self.gateway = gateway
        self.key = key
        self.on_event = on_event
        self.wait = wait
        self.consistent = consistent
        self.backoff = reconnect.start()
        self.bucket = reads.start()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name or f"watch:{key}", daemon=True)
        self.requests = 0
        self.remind_after = remind_after
        self.failures = failures or WatchFailures(key)

    def start(self) -> KeyWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop after the query in flight returns (at most ``wait`` later; it is harmless)."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def _read(self, index: int, wait: float | None) -> tuple[int, KeyRead]:
        self.requests += 1
        read = self.gateway.get_key(self.key, index=index, wait=wait, consistent=self.consistent)
        return read.index, read

    def _reminder_due(self, given: int) -> float:
        """Outage length at which reminder number ``given`` is due: the schedule, then every last step."""
        if given < len(self.remind_after):
            return self.remind_after[given]
        last = self.remind_after[-1]
        step = last - (self.remind_after[-2] if len(self.remind_after) > 1 else 0.0)
        return last + step * (given - len(self.remind_after) + 1)

    def _run(self) -> None:
        last: tuple[int, bytes | None] | None = None
        up: bool | None = None
        down_since, reminders, cause = 0.0, 0, ""
        refused: str | None = None
        for answer in blocking_answers(self._read, self.wait, stop=self._stop, reads=self.bucket, backoff=self.backoff, what=self.key,
                                       failures=self.failures):
            if isinstance(answer, QueryFailed) and isinstance(answer.error, ConsulPermissionDenied):
                # Consul is up and said no: report the refusal (once); retried with the same capped backoff.
                if up is not True:
                    up = True
                    self.on_event(ConsulReachability(True))
                if refused != str(answer.error):
                    refused = str(answer.error)
                    self.on_event(ReadRefused(self.key, refused))
                continue
            if isinstance(answer, QueryFailed):
                error = str(answer.error)
                if up is not False:
                    up, down_since, reminders, cause = False, time.monotonic(), 0, error
                    self.on_event(ConsulReachability(False, cause))
                else:
                    down_for = time.monotonic() - down_since
                    if down_for >= self._reminder_due(reminders) or error != cause:
                        reminders += down_for >= self._reminder_due(reminders)
                        cause = error
                        self.on_event(ConsulReachability(False, cause, down_seconds=down_for, reminder=True))
                continue
            if up is not True:
                up = True
                self.on_event(ConsulReachability(True))
            if refused is not None:
                refused = None
                self.on_event(ReadRefused(self.key, None))
            seen = (answer.modify_index, answer.value)
            if seen != last:
                last = seen
                if not self._stop.is_set():
                    self.on_event(KeyChanged(self.key, answer))
