"""KeyWatcher: one long-poll on one Consul key, emitting what it sees. It never acts.

It follows Consul's blocking-query rules: the index only moves forward (reset
to 0 when it goes backwards), a return is not a change (compare the key's
ModifyIndex and value), never block on index 0, bounded ``wait``, capped and
jittered backoff on errors, and a token bucket so a key that changes many
times a second costs a bounded number of requests.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from agent.clients.blocking import next_index
from agent.clients.consul import ConsulGateway, KeyRead
from agent.core.backoff import Backoff, TokenBucket
from agent.core.errors import ConsulPermissionDenied, MaintenanceAgentError


@dataclass(frozen=True)
class KeyChanged:
    key: str
    read: KeyRead


@dataclass(frozen=True)
class ConsulReachability:
    up: bool
    error: str = ""


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
        backoff: Backoff | None = None,
        bucket: TokenBucket | None = None,
        name: str = "",
    ):
        self.gateway = gateway
        self.key = key
        self.on_event = on_event
        self.wait = wait
        self.consistent = consistent
        # first_spread: the first retry after Consul goes away is spread over
        # 2 s so a fleet's agents do not reconnect in lockstep.
        self.backoff = backoff or Backoff(base=0.5, cap=30.0, first_spread=2.0)
        self.bucket = bucket or TokenBucket(capacity=10, rate=2.0)
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

    def _run(self) -> None:
        index = 0
        last: tuple[int, bytes | None] | None = None
        up: bool | None = None
        refused: str | None = None
        while not self._stop.is_set():
            pause = self.bucket.delay()
            if pause and self._stop.wait(pause):
                return
            self.requests += 1
            try:
                read = self.gateway.get_key(self.key, index=index, wait=self.wait, consistent=self.consistent)
            except ConsulPermissionDenied as exc:
                # Consul is up and said no: report the refusal (once), retry with the same capped backoff.
                if up is not True:
                    up = True
                    self.on_event(ConsulReachability(True))
                if refused != str(exc):
                    refused = str(exc)
                    self.on_event(ReadRefused(self.key, refused))
                index = 0
                self._stop.wait(self.backoff.next())
                continue
            except Exception as exc:  # noqa: BLE001 - typed errors expected; anything else must not kill the watch
                if not isinstance(exc, MaintenanceAgentError):
                    exc = MaintenanceAgentError(f"unexpected {type(exc).__name__} reading {self.key}: {exc}")
                if up is not False:
                    up = False
                    self.on_event(ConsulReachability(False, str(exc)))
                index = 0  # after an outage, read afresh
                self._stop.wait(self.backoff.next())
                continue
            self.backoff.reset()
            if up is not True:
                up = True
                self.on_event(ConsulReachability(True))
            if refused is not None:
                refused = None
                self.on_event(ReadRefused(self.key, None))
            index = next_index(index, read.index)
            seen = (read.modify_index, read.value)
            if seen != last:
                last = seen
                if not self._stop.is_set():
                    self.on_event(KeyChanged(self.key, read))
