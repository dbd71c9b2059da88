"""FleetView: what the gates need to know about the other boxes, read from Consul.

``snapshot()`` reads the registered boxes of the environment and the status
keys of the boxes a gate waits for. ``watch()`` keeps one blocking query per
status key the gate still waits for (not the whole prefix: a fleet of
hundreds of boxes must not wake every agent on every status write) plus one
on the membership, each waking the reconciler when something changes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from agent.backoff import Backoff, TokenBucket
from agent.consul import ConsulGateway
from agent.model import Member, Status
from agent.watcher import KeyChanged, KeyWatcher, WatchEvent, next_index


class FleetView:
    def __init__(self, gateway: ConsulGateway, environment: str, status_prefix: str, wake: Callable[[], None], wait: float = 60.0):
        self.gateway = gateway
        self.environment = environment
        self.status_prefix = status_prefix.rstrip("/") + "/"
        self.wake = wake
        self.wait = wait
        self._watchers: dict[str, KeyWatcher] = {}
        self._members_thread: threading.Thread | None = None
        self._stop = threading.Event()
        # Gate reads of the decision thread are budgeted (issue 8: a flapping
        # intent opens and closes gates as fast as it changes): a burst, then
        # one gate evaluation a second. The reconciler asks ``read_budget()`` and, when it
        # is spent, comes back later instead of sleeping (the watchdog).
        self.bucket = TokenBucket(capacity=5, rate=1.0)

    def read_budget(self) -> float:
        """0 when a gate read may happen now (and takes it), else seconds until it may."""
        return self.bucket.try_take()

    def status_key(self, box: str) -> str:
        return self.status_prefix + box

    def members(self) -> list[Member]:
        return self.gateway.members(self.environment)[1]

    def read_status(self, box: str) -> Status | None:
        read = self.gateway.get_key(self.status_key(box))
        if not read.exists:
            return None
        try:
            return Status.from_json(read.value or b"")
        except (ValueError, TypeError):
            return None  # unreadable: treated as "no status", which blocks

    def snapshot(self, boxes: Iterable[str]) -> dict[str, Status | None]:
        return {box: self.read_status(box) for box in boxes}

    def watch(self, boxes: Iterable[str]) -> None:
        """Keep blocking queries on exactly these boxes' status keys (and the membership)."""
        wanted = {self.status_key(b) for b in boxes}
        for key in list(self._watchers):
            if key not in wanted:
                self._watchers.pop(key).stop()
        for key in wanted - set(self._watchers):
            # Each watcher has its own small budget: a shared one would let N
            # watchers run up a debt that stalls all of them.
            self._watchers[key] = KeyWatcher(self.gateway, key, self._on_event, wait=self.wait, name=f"gate:{key}",
                                             bucket=TokenBucket(capacity=3, rate=0.5)).start()
        if wanted and self._members_thread is None:
            self._members_thread = threading.Thread(target=self._watch_members, name="gate:members", daemon=True)
            self._members_thread.start()

    def unwatch(self) -> None:
        self.watch(())

    def stop(self) -> None:
        self._stop.set()
        self.unwatch()

    def _on_event(self, event: WatchEvent) -> None:
        if isinstance(event, KeyChanged):
            self.wake()

    def _watch_members(self) -> None:
        index, backoff = 0, Backoff(base=0.5, cap=30.0, first_spread=2.0)  # jittered reconnect (issue 8)
        bucket = TokenBucket(capacity=3, rate=0.5)  # the membership churns with every check update
        while not self._stop.is_set():
            pause = bucket.delay()
            if pause and self._stop.wait(pause):
                return
            try:
                new_index, _ = self.gateway.members(self.environment, index=index, wait=self.wait)
            except Exception:  # noqa: BLE001 - typed errors expected; nothing may end this watch
                index = 0
                self._stop.wait(backoff.next())
                continue
            backoff.reset()
            if new_index != index and index != 0:
                self.wake()
            index = next_index(index, new_index)
