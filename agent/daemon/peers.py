"""PeerView: what the gates need to know about the other boxes, read from Consul.

``members()`` is the environment's registered boxes, ``snapshot()`` the status
of the boxes a gate needs. While a gate waits, ``watch()`` keeps one blocking
query per status key it needs (not the whole prefix: a fleet of hundreds of
boxes must not wake every agent on every status write) plus one on the
membership. Those watches also *cache* what they saw, so re-evaluating a gate
after a wake costs Consul nothing; only keys not watched yet are read
directly, and those reads have a budget (``read_budget``) the decision thread
asks for without ever sleeping on it. Each watch has its own small budget,
so a churning key costs a burst, then a slow rate.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from agent.clients.blocking import QueryFailed, blocking_answers
from agent.clients.consul import ConsulGateway
from agent.core.model import Member, Status
from agent.core.settings import DEFAULTS, Settings
from agent.daemon.watcher import KeyChanged, KeyWatcher, WatchEvent


def parse_status(raw: bytes | None) -> Status | None:
    """A status key's value, or None when missing or unreadable (which blocks a gate)."""
    if raw is None:
        return None
    try:
        return Status.from_json(raw)
    except (ValueError, TypeError):
        return None


class PeerView:
    def __init__(self, gateway: ConsulGateway, environment: str, status_prefix: str, wake: Callable[[], None], wait: float = 60.0,
                 settings: Settings = DEFAULTS):
        self.gateway = gateway
        self.settings = settings
        self.environment = environment
        self.status_prefix = status_prefix.rstrip("/") + "/"
        self.wake = wake
        self.wait = wait
        self._lock = threading.Lock()
        self._watchers: dict[str, KeyWatcher] = {}
        self._seen: dict[str, Status | None] = {}  # what the running watchers saw last, by key
        self._members: list[Member] | None = None  # what the membership watch saw last
        self._members_thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.bucket = settings.gate_direct_reads.start()

    def read_budget(self) -> float:
        """0 when a gate may read Consul now, else seconds until it may.

        Free while the watches serve the gate from their cache; otherwise it
        takes from the budget of direct reads.
        """
        with self._lock:
            if self._watchers and self._members is not None:
                return 0.0
        return self.bucket.try_take()

    def status_key(self, box: str) -> str:
        return self.status_prefix + box

    def members(self) -> list[Member]:
        with self._lock:
            if self._members is not None:
                return list(self._members)
        return self.gateway.members(self.environment)[1]

    def read_status(self, box: str) -> Status | None:
        return parse_status(self.gateway.get_key(self.status_key(box)).value)

    def snapshot(self, boxes: Iterable[str]) -> dict[str, Status | None]:
        out: dict[str, Status | None] = {}
        for box in boxes:
            key = self.status_key(box)
            with self._lock:
                known, status = key in self._seen, self._seen.get(key)
            out[box] = status if known else self.read_status(box)
        return out

    def watch(self, boxes: Iterable[str]) -> None:
        """Also keep blocking queries (and their cache) on these boxes' status keys, and on the membership."""
        for key in {self.status_key(b) for b in boxes} - set(self._watchers):
            watcher = KeyWatcher(self.gateway, key, self._on_event, wait=self.wait, name=f"gate:{key}",
                                 reconnect=self.settings.consul_reconnect, reads=self.settings.gate_watch_reads)
            self._watchers[key] = watcher.start()
        if self._watchers and self._members_thread is None:
            self._members_thread = threading.Thread(target=self._watch_members, name="gate:members", daemon=True)
            self._members_thread.start()

    def unwatch(self) -> None:
        """Stop the status watches (each ends when its query returns) and forget what they saw."""
        with self._lock:
            watchers, self._watchers = self._watchers, {}
            self._seen.clear()
        for watcher in watchers.values():
            watcher.stop()

    def stop(self) -> None:
        self._stop.set()
        self.unwatch()

    def _on_event(self, event: WatchEvent) -> None:
        if isinstance(event, KeyChanged):
            with self._lock:
                if event.key in self._watchers:
                    self._seen[event.key] = parse_status(event.read.value)
            self.wake()

    def _read_members(self, index: int, wait: float | None) -> tuple[int, list[Member]]:
        return self.gateway.members(self.environment, index=index, wait=wait)

    def _watch_members(self) -> None:
        answers = blocking_answers(self._read_members, self.wait, stop=self._stop, reads=self.settings.membership_reads.start(),
                                   backoff=self.settings.consul_reconnect.start(), what=f"the members of {self.environment}")
        for answer in answers:
            if isinstance(answer, QueryFailed):
                with self._lock:
                    self._members = None  # no longer current: read directly until the watch is back
                continue
            with self._lock:
                changed = self._members is not None and set(answer) != set(self._members)
                self._members = answer
            if changed:
                self.wake()
