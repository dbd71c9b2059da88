"""KeyWatcher: one long-poll on one Consul key, emitting what it sees. It never acts.

It follows Consul's blocking-query rules through ``agent.clients.blocking``
(index rules, bounded ``wait``, capped and jittered backoff on errors, a
token bucket so a key that changes many times a second costs a bounded
number of requests); a return is not a change: it compares the key's
ModifyIndex and value with what it saw.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from agent.clients.blocking import QueryFailed, blocking_answers
from agent.clients.consul import ConsulGateway, KeyRead
from agent.core.settings import DEFAULTS, BackoffPolicy, BucketPolicy


@dataclass(frozen=True)
class KeyChanged:
    key: str
    read: KeyRead


@dataclass(frozen=True)
class ConsulReachability:
    up: bool
    error: str = ""


WatchEvent = KeyChanged | ConsulReachability


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

    def _run(self) -> None:
        last: tuple[int, bytes | None] | None = None
        up: bool | None = None
        for answer in blocking_answers(self._read, self.wait, stop=self._stop, reads=self.bucket, backoff=self.backoff, what=self.key):
            if isinstance(answer, QueryFailed):
                if up is not False:
                    up = False
                    self.on_event(ConsulReachability(False, str(answer.error)))
                continue
            if up is not True:
                up = True
                self.on_event(ConsulReachability(True))
            seen = (answer.modify_index, answer.value)
            if seen != last:
                last = seen
                if not self._stop.is_set():
                    self.on_event(KeyChanged(self.key, answer))
