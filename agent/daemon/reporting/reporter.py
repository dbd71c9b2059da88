"""StatusReporter: writes this box's status key under this agent's session, and keeps it there.

The status key ``<prefix>/<env>/status/<node>`` is written with ``acquire``
under a Consul session with behaviour ``delete`` (``SessionKeeper``), so it
disappears when the agent dies. One thread (re)writes the latest status
whenever it changed or was lost. The session is bound to a check the local
Consul agent runs, so the reporter sends nothing while idle: one blocking
query on its own status key tells it when the key vanished (session
invalidated, local Consul agent restarted) or was changed by someone else,
and it recreates and rewrites within moments.

The key belongs to one agent. Before ending a session that holds it, the
reporter checks the session is its own earlier incarnation (same session name:
node key, host and state directory); a live session of another agent (two
boxes configured with the same node name) is never destroyed: the reporter
raises ``StatusKeyConflict`` instead, which is logged once, shown in the
metrics and ``/healthz``, and retried every interval until the other agent is
gone.

The reconciler only hands it the newest ``Status``; writing never blocks a
decision. What the threads share (the newest status, what was written and
under which session, what is being written, the conflict) is read and written
under one lock; ``report_once`` is one step of the writing thread, which the
tests drive directly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.clients.blocking import WatchFailures
from agent.clients.consul import ConsulGateway, KeyRead
from agent.core.backoff import TokenBucket
from agent.core.errors import ConsulPermissionDenied, MaintenanceAgentError, retry_delay
from agent.core.model import Status
from agent.core.settings import DEFAULTS, Settings
from agent.daemon.local.statefile import StateFile
from agent.daemon.reporting.session import SessionKeeper
from agent.daemon.watches.watcher import KeyChanged, KeyWatcher, WatchEvent


class StatusKeyConflict(MaintenanceAgentError):
    """The status key is held by a live session of another agent (the same node name configured twice)."""


@dataclass(frozen=True)
class Written:
    """A status body as this agent put it on its key: under which session, and what of it gates read."""

    body: str
    session: str
    gate_fields: tuple[object, ...] = ()


class StatusReporter:
    def __init__(self, gateway: ConsulGateway, key: str, service_id: str, tags: list[str], meta: dict[str, str], memory: StateFile,
                 health_url: str, ttl: int = 15, log: Any = None, identity: str = "",
                 on_conflict: Callable[[str | None], None] | None = None, wait: float = 60.0, settings: Settings = DEFAULTS,
                 own_key_failures: WatchFailures | None = None):
        self.gateway = gateway
        self.key = key
        self.ttl = ttl
        self.log = log
        # Names this agent's sessions: a session of that name holding the key is
        # an earlier incarnation of this agent, any other is another agent's.
        self.session_name = f"maintenance-agent {key} {identity}".strip()
        self.keeper = SessionKeeper(gateway, service_id, tags, meta, memory, self.session_name, health_url, ttl=ttl, log=log)
        # Nothing renews the session: watch the key itself to learn it is gone. Its reconnects are capped like
        # the reporter's retries (a fifth of the TTL), so after the local Consul agent comes back the lost key
        # is seen, and written again, within one TTL.
        self.own_key = KeyWatcher(gateway, key, self.on_own_key, wait=wait, name=f"report-watch:{key}",
                                  reconnect=settings.consul_reconnect.capped(ttl / 5, ttl / 5), reads=settings.own_key_reads,
                                  failures=own_key_failures)
        self.on_conflict = on_conflict or (lambda message: None)
        self._lock = threading.Lock()
        self._progress = threading.Condition(self._lock)  # notified when a write lands
        self._latest: Status | None = None  # the newest status the reconciler handed over
        self._written: Written | None = None  # what is on the key as far as we know (None: lost, or never written)
        self._writing: Written | None = None  # the PUT in flight
        self._conflict: str | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._backoff = settings.report_retry.capped(ttl / 5, ttl / 5).start()
        self._failing = False  # the writing thread's: a run of failures is logged once
        self._thread = threading.Thread(target=self._run, name=f"report:{key}", daemon=True)
        self.writes = 0
        # A status that changes many times a second (a flapping intent) is
        # written as a burst, then at a bounded rate (the newest wins). Changes
        # other boxes' gates read (state, intent index, progress) have their
        # own budget, so a chatty blocked_on text never delays them.
        self._bucket = settings.status_writes.start()
        self._chatter_bucket = settings.status_chatter.start()

    @property
    def interval(self) -> float:
        return self.keeper.interval

    @property
    def session(self) -> str | None:
        """The session the status on the key was written under (None: not written, or lost)."""
        with self._lock:
            return self._written.session if self._written is not None else None

    @property
    def conflict(self) -> str | None:
        """Why the key is not ours (another agent's live session holds it), or None."""
        with self._lock:
            return self._conflict

    def start(self) -> None:
        self._thread.start()
        self.own_key.start()

    def alive(self) -> bool:
        """Both threads: the writer, and the watch on its own key (the only way to learn the key is gone;
        ``/healthz`` reads this, so a dead watch gets the agent restarted instead of missing for good)."""
        return self._thread.is_alive() and self.own_key.alive()

    def publish(self, status: Status) -> None:
        with self._lock:
            self._latest = status
        self._wake.set()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until the latest status is written (tests, shutdown)."""
        self._wake.set()
        with self._progress:
            return self._progress.wait_for(self._latest_written, timeout)

    def stop(self, release: bool = True) -> None:
        """Stop writing; with ``release`` end the session (deleting the status key)."""
        self._stop.set()
        self._wake.set()
        self.own_key.stop()
        self._thread.join(timeout=10)
        if release:
            self.keeper.release()

    def on_own_key(self, event: WatchEvent) -> None:
        """Our status key as Consul has it (the own-key watch's events): gone, or not as we wrote it, means the
        session died or someone else wrote it: verify the session and write again."""
        if not isinstance(event, KeyChanged):
            return
        with self._lock:
            known = self._written  # what we last wrote, as this event is handled
        ours = self._is_ours(event.read)
        if not ours and known is not None:
            # The answer may predate our latest write (the key vanished, we wrote it again, then this answer
            # arrived): believe it only if the key as it is now is not ours either.
            try:
                ours = self._is_ours(self.gateway.get_key(self.key))
            except MaintenanceAgentError:
                ours = False
        with self._lock:
            # A write finished meanwhile (a new record): this answer says nothing about it.
            lost = not ours and self._written is not None and self._written is known
            if lost:
                self._written = None
        if lost:
            self.keeper.suspect()
        if not ours:
            self._wake.set()  # also when nothing of ours was on it: a twin's key that vanished may be ours to take now

    def _is_ours(self, read: KeyRead) -> bool:
        """Whether ``read`` shows what this agent wrote (or is writing: the watch may see a write before its PUT returns)."""
        value = (read.value or b"").decode(errors="replace")
        with self._lock:
            return read.exists and any(w is not None and (w.body, w.session) == (value, read.session) for w in (self._written, self._writing))

    # -- the writing thread --------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            wait = self.report_once()
            self._wake.wait(wait)
            self._wake.clear()

    def report_once(self) -> float | None:
        """One step of the writing thread: write the newest status if it is not on the key; how long to wait then
        (None: until woken by a new status or by the own-key watch). Failures are retried, never raised."""
        bucket = self._budget_for_next_write()
        pause = bucket.try_take() if bucket is not None else 0.0
        if pause > 0:
            return pause  # out of budget: a newer status (which may need the other budget) cuts the wait short
        try:
            self._write_latest()
        except StatusKeyConflict as exc:
            self._set_conflict(str(exc))
            return self.interval  # the other agent may stop; look again, calmly
        except MaintenanceAgentError as exc:
            self._failed(exc)
            # A refusal (403) will not pass by itself: retried once a TTL, or at once for a new status.
            return retry_delay(exc, self._backoff.next(), slow=float(self.ttl))
        except Exception as exc:  # noqa: BLE001 - e.g. the state file's disk full: logged with its traceback, keep reporting
            self._failed(exc)
            return self._backoff.next()
        self._backoff.reset()
        if self._failing and self.log:
            self.log.info("status report recovered", key=self.key)
        self._failing = False
        self._set_conflict(None)
        return None

    def _failed(self, exc: Exception) -> None:
        """Called in the ``except`` block: a run of failures is logged once (an unexpected one with its traceback)."""
        if not self._failing and self.log and isinstance(exc, MaintenanceAgentError):
            self.log.warning("status report failing; retrying with backoff", key=self.key, error=str(exc))
        elif not self._failing and self.log:
            self.log.exception("status report failed unexpectedly; retrying with backoff", key=self.key, error=str(exc))
        self._failing = True
        self.keeper.suspect()  # verify or recreate the session on the next try

    def _set_conflict(self, message: str | None) -> None:
        with self._lock:
            before, self._conflict = self._conflict, message
        if message == before:
            return
        if self.log and message:
            self.log.error("status key held by another agent; not taking it over", key=self.key, conflict=message)
        elif self.log and before:
            self.log.info("status key conflict resolved; writing the status", key=self.key)
        self.on_conflict(message)

    def _latest_written(self) -> bool:
        """Under the lock: the newest status is on the key."""
        return self._latest is not None and self._written is not None and self._written.body == self._latest.to_json()

    def _budget_for_next_write(self) -> TokenBucket | None:
        """The budget the pending write draws on; None when there is nothing new to write."""
        with self._lock:
            latest, written = self._latest, self._written
        if latest is None or (written is not None and written.body == latest.to_json()):
            return None
        return self._bucket if written is None or latest.gate_fields() != written.gate_fields else self._chatter_bucket

    def _write_latest(self) -> None:
        session = self.keeper.ensure()
        with self._lock:
            latest, written = self._latest, self._written
        if latest is None:
            return
        body = latest.to_json()
        if written is not None and (written.body, written.session) == (body, session):
            return  # a new session (the old one lost, and the key with it) means writing again
        attempt = Written(body, session, latest.gate_fields())
        with self._lock:
            self._writing = attempt
        try:
            if not self.gateway.put_key(self.key, body, acquire=session):
                self._take_over_key(session)
                if not self.gateway.put_key(self.key, body, acquire=session):
                    raise MaintenanceAgentError(f"cannot acquire {self.key} with session {session}: held by another session")
        except BaseException:
            with self._lock:
                self._writing = None
            raise
        with self._progress:  # written, and no longer in flight, in one step: the watch never sees it as neither
            self._writing, self._written = None, attempt
            self._progress.notify_all()
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
