"""StatusReporter: writes this box's status key under this agent's session, and keeps it there.

The status key ``<prefix>/<env>/status/<node>`` is written with ``acquire``
under a Consul session with behaviour ``delete`` (``SessionKeeper``), so it
disappears when the agent dies. One thread (re)writes the latest status
whenever it changed or was lost. With a check-bound session the reporter
sends nothing while idle: one blocking query on its own status key tells it
when the key vanished (session invalidated, local Consul agent restarted) or
was changed by someone else, and it recreates and rewrites within moments.

The key belongs to one agent. Before ending a session that holds it, the
reporter checks the session is its own earlier incarnation (same session name:
node key, host and state directory); a live session of another agent (two
boxes configured with the same node name) is never destroyed: the reporter
raises ``StatusKeyConflict`` instead, which is logged once, shown in the
metrics and ``/healthz``, and retried every interval until the other agent is
gone.

The reconciler only hands it the newest ``Status``; writing never blocks a
decision.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from agent.clients.blocking import WatchFailures
from agent.clients.consul import ConsulGateway
from agent.core.backoff import TokenBucket
from agent.core.errors import ConsulPermissionDenied, MaintenanceAgentError, retry_delay
from agent.core.model import Status
from agent.core.settings import DEFAULTS, Settings
from agent.daemon.local.statefile import StateFile
from agent.daemon.reporting.session import SessionKeeper
from agent.daemon.watches.watcher import KeyChanged, KeyWatcher, WatchEvent


class StatusKeyConflict(MaintenanceAgentError):
    """The status key is held by a live session of another agent (the same node name configured twice)."""


class StatusReporter:
    def __init__(
        self,
        gateway: ConsulGateway,
        key: str,
        service_id: str,
        tags: list[str],
        meta: dict[str, str],
        memory: StateFile,
        ttl: int = 15,
        log: Any = None,
        identity: str = "",
        on_conflict: Callable[[str | None], None] | None = None,
        health_url: str | None = None,
        wait: float = 60.0,
        settings: Settings = DEFAULTS,
        own_key_failures: WatchFailures | None = None,
    ):
        self.gateway = gateway
        self.key = key
        self.ttl = ttl
        self.log = log
        # Names this agent's sessions: a session of that name holding the key is
        # an earlier incarnation of this agent, any other is another agent's.
        self.session_name = f"maintenance-agent {key} {identity}".strip()
        self.keeper = SessionKeeper(gateway, service_id, tags, meta, memory, self.session_name, ttl=ttl, health_url=health_url, log=log)
        # With a check-bound session nothing renews it: watch the key itself to learn it is gone. Its
        # reconnects are capped like the reporter's retries (a fifth of the TTL), so after the local
        # Consul agent comes back the lost key is seen, and written again, within one TTL.
        self._own_key = (KeyWatcher(gateway, key, self._on_own_key, wait=wait, name=f"report-watch:{key}",
                                    reconnect=settings.consul_reconnect.capped(ttl / 5, ttl / 5), reads=settings.own_key_reads,
                                    failures=own_key_failures)
                         if health_url else None)
        self.on_conflict = on_conflict or (lambda message: None)
        self.conflict: str | None = None
        self._lock = threading.Lock()
        self._latest: Status | None = None
        self._written: str | None = None
        self._writing: str | None = None  # the body of the PUT in flight
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._backoff = settings.report_retry.capped(ttl / 5, ttl / 5).start()
        self._thread = threading.Thread(target=self._run, name=f"report:{key}", daemon=True)
        self.writes = 0
        # A status that changes many times a second (a flapping intent) is
        # written as a burst, then at a bounded rate (the newest wins). Changes
        # other boxes' gates read (state, intent index, progress) have their
        # own budget, so a chatty blocked_on text never delays them.
        self._bucket = settings.status_writes.start()
        self._chatter_bucket = settings.status_chatter.start()
        self._written_under: str | None = None  # the session the status was last written under
        self._written_gate_fields: tuple[object, ...] | None = None

    @property
    def interval(self) -> float:
        return self.keeper.interval

    @property
    def session(self) -> str | None:
        return self.keeper.session

    def start(self) -> None:
        self._thread.start()
        if self._own_key:
            self._own_key.start()

    def alive(self) -> bool:
        """Both threads: the writer, and the watch on its own key (with a check-bound session the only way to learn
        the key is gone; ``/healthz`` reads this, so a dead watch gets the agent restarted instead of missing for good)."""
        return self._thread.is_alive() and (self._own_key is None or self._own_key.alive())

    def publish(self, status: Status) -> None:
        with self._lock:
            self._latest = status
        self._wake.set()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until the latest status is written (tests, shutdown)."""
        self._wake.set()
        deadline = threading.Event()
        for _ in range(int(timeout / 0.02)):
            with self._lock:
                if self._latest is not None and self._latest.to_json() == self._written:
                    return True
            deadline.wait(0.02)
        return False

    def stop(self, release: bool = True) -> None:
        """Stop writing; with ``release`` end the session (deleting the status key)."""
        self._stop.set()
        self._wake.set()
        if self._own_key:
            self._own_key.stop()
        self._thread.join(timeout=10)
        if release:
            self.keeper.release()

    def _on_own_key(self, event: WatchEvent) -> None:
        """Our status key as Consul has it: gone or not as written means the session died or someone wrote it."""
        if not isinstance(event, KeyChanged):
            return
        read = event.read
        with self._lock:
            # The watch may see a write before its PUT returns: what is being written is ours too.
            ours = (read.exists and read.session == self.keeper.session
                    and (read.value or b"").decode(errors="replace") in (self._written, self._writing))
            if not ours and self._written is not None:
                self._written = None
                self._written_gate_fields = None
                self.keeper.suspect()
        if not ours:
            self._wake.set()

    def _run(self) -> None:
        failing = False
        while not self._stop.is_set():
            bucket = self._budget_for_next_write()
            pause = bucket.try_take() if bucket is not None else 0.0
            if pause > 0:
                # Out of budget: wait, but let a newer status (which may need
                # the other budget) cut the wait short and choose again.
                self._wake.wait(pause)
                self._wake.clear()
                continue
            try:
                self._tick()
                self._backoff.reset()
                if failing and self.log:
                    self.log.info("status report recovered", key=self.key)
                failing = False
                wait = self.keeper.due_in()  # None: nothing to do until a new status or our key changes
                self._set_conflict(None)
            except StatusKeyConflict as exc:
                self._set_conflict(str(exc))
                wait = self.interval  # the other agent may stop; look again, calmly
            except MaintenanceAgentError as exc:
                if not failing and self.log:  # once per outage, not once per retry
                    self.log.warning("status report failing; retrying with backoff", key=self.key, error=str(exc))
                failing = True
                self.keeper.failed()  # renew, verify or recreate the session on the next try
                # A refusal (403) will not pass by itself: retried once a TTL, or at once for a new status.
                wait = retry_delay(exc, self._backoff.next(), slow=float(self.ttl))
            except Exception as exc:  # noqa: BLE001 - e.g. the state file's disk full: keep reporting
                if self.log:
                    self.log.exception("status report failed unexpectedly; retrying with backoff", key=self.key, error=str(exc))
                failing = True
                self.keeper.failed()
                wait = self._backoff.next()
            self._wake.wait(wait)
            self._wake.clear()

    def _set_conflict(self, message: str | None) -> None:
        if message == self.conflict:
            return
        if self.log and message:
            self.log.error("status key held by another agent; not taking it over", key=self.key, conflict=message)
        elif self.log and self.conflict:
            self.log.info("status key conflict resolved; writing the status", key=self.key)
        self.conflict = message
        self.on_conflict(message)

    def _budget_for_next_write(self) -> TokenBucket | None:
        """The budget the pending write draws on; None when there is nothing new to write."""
        with self._lock:
            latest = self._latest
        if latest is None or latest.to_json() == self._written:
            return None
        return self._bucket if latest.gate_fields() != self._written_gate_fields else self._chatter_bucket

    def _tick(self) -> None:
        session = self.keeper.ensure()
        with self._lock:
            latest = self._latest
        if latest is None:
            return
        body = latest.to_json()
        if body == self._written and session == self._written_under:
            return  # a new session (the old one lost, and the key with it) means writing again
        with self._lock:
            self._writing = body
        try:
            if not self.gateway.put_key(self.key, body, acquire=session):
                self._take_over_key(session)
                if not self.gateway.put_key(self.key, body, acquire=session):
                    raise MaintenanceAgentError(f"cannot acquire {self.key} with session {session}: held by another session")
        except BaseException:
            with self._lock:
                self._writing = None
            raise
        with self._lock:  # written, and no longer in flight, in one step: the watch never sees it as neither
            self._writing = None
            self._written = body
            self._written_gate_fields = latest.gate_fields()
            self._written_under = session
        self.writes += 1

    def _take_over_key(self, session: str) -> None:
        """The key is held by another session: end it if it is this agent's earlier incarnation, else refuse.

        Raises ``StatusKeyConflict`` when a live session of another agent holds it.
        """
        read = self.gateway.get_key(self.key)
        if not read.session or read.session == session:
            return
        try:
            holder = self.gateway.session_info(read.session)
        except ConsulPermissionDenied:
            # Our token may read the sessions of our own Consul node only: the holder is elsewhere, so not ours.
            holder = {"Name": "?", "Node": "a node this agent's token may not read"}
        if holder is None:
            return  # ended meanwhile: the next acquire may succeed
        if holder.get("Name") == self.session_name:
            self.gateway.destroy_session(read.session)  # our killed predecessor, whose state file lost its id
            return
        raise StatusKeyConflict(
            f"{self.key} is held by session {read.session} ({holder.get('Name')!r}, Consul node {holder.get('Node')}) of another "
            "agent: two agents configured with the same node name? Fix one's [agent] node; this agent will not take the key over")
