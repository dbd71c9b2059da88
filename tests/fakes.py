"""Every fake of the unit tests, in one place: Consul's keys, a fleet, steps, a service manager.

The real edges (Consul, HAProxy, supervisord) are tested against the real
services in tests/integration; these fakes only let the logic be tested fast
and table-driven. Each one satisfies the protocol the code asks for
(``ConsulKV``, ``Peers``, ``Step``, ``ServiceBackend``, ``MapRuntime``, ``Verifier``) and says so by
subclassing it, so ``mypy --strict tests/fakes.py`` (run by scripts/test)
fails when a fake drifts from what the code asks for.
"""

from __future__ import annotations

import itertools
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from agent.clients.consul import ConsulKV, KeyRead
from agent.core.errors import ConsulUnavailable, PermanentError, StepError, StepPending
from agent.core.model import Member, Mode, Role, Status
from agent.core.settings import BackoffPolicy
from agent.daemon.backends.base import BackendError, RunState, ServiceBackend
from agent.daemon.decision.gatekeeper import Peers
from agent.daemon.decision.reconcile import Reconciler
from agent.daemon.local.metrics import AgentMetrics
from agent.daemon.local.statefile import StateFile
from agent.daemon.steps.base import Step, StepContext
from agent.daemon.steps.haproxy import MapRuntime, Verifier
from agent.daemon.watches.watcher import KeyChanged


class FakeGateway(ConsulKV):
    """An in-memory stand-in for ``ConsulGateway``: keys with Consul's check-and-set and lock rules, sessions, the
    membership and the local agent's registrations.

    The rules it keeps (``tests/integration/test_fake_gateway.py`` runs the same moves against real Consul):
    a ``cas`` write needs the key's ModifyIndex (0: the key must not exist), and goes with neither ``acquire``
    nor ``release`` (Consul answers 400: ``PermanentError``); ``acquire`` needs a live session
    (else Consul answers 500: ``ConsulUnavailable``), and fails, changing nothing, while another session holds
    the key; the holder may write again; ``release`` unlocks a key its session holds and fails for any other;
    a plain write keeps the lock; ending a session (destroyed, or invalidated by a failing check) deletes the
    keys it holds (behaviour ``delete``, what ``ConsulGateway.create_session`` asks for). ``calls`` counts each
    method called, so a test can tell a step that asked Consul nothing.
    """

    def __init__(self, address: str = "http://fake:8500", token: str | None = None, members: Sequence[Member] = ()):
        self.address = address
        self.token = token
        self.kv: dict[str, tuple[bytes, int]] = {}
        self.locks: dict[str, str] = {}  # key -> the session holding it
        self.sessions: dict[str, dict[str, Any]] = {}
        self.services: dict[str, dict[str, Any]] = {}  # registered on the local agent, by service id
        self.calls: Counter[str] = Counter()
        self.index = 10
        self.members_list = list(members)
        self._session_ids = itertools.count(1)

    def get_key(self, key: str, index: int = 0, wait: float | None = None, consistent: bool = False) -> KeyRead:
        self.calls["get_key"] += 1
        if key not in self.kv:
            return KeyRead(index=self.index, value=None)
        value, modify = self.kv[key]
        return KeyRead(index=self.index, value=value, modify_index=modify, session=self.locks.get(key))

    def read_prefix(self, prefix: str, index: int = 0, wait: float | None = None) -> tuple[int, dict[str, KeyRead]]:
        self.calls["read_prefix"] += 1
        return self.index, {k: KeyRead(self.index, v, m, self.locks.get(k)) for k, (v, m) in self.kv.items() if k.startswith(prefix)}

    def read_keys(self, keys: Collection[str]) -> dict[str, KeyRead]:
        self.calls["read_keys"] += 1
        return {k: KeyRead(self.kv[k][1], self.kv[k][0], self.kv[k][1], self.locks.get(k)) if k in self.kv else KeyRead(1, None)
                for k in keys}

    def put_key(self, key: str, value: bytes | str, cas: int | None = None, acquire: str | None = None, *,
                release: str | None = None) -> bool:
        self.calls["put_key"] += 1
        if sum(flag is not None for flag in (cas, acquire, release)) > 1:
            raise PermanentError(f"Consul at {self.address} refused write of {key}: 400 Conflicting flags")
        for session in (acquire, release):
            if session is not None and session not in self.sessions:
                raise ConsulUnavailable(f"Consul at {self.address} answered HTTP 500 to write of {key}: invalid session {session!r}")
        current = self.kv.get(key)
        if cas is not None and (current[1] if current else 0) != cas:
            return False
        holder = self.locks.get(key)
        if (acquire is not None and holder not in (None, acquire)) or (release is not None and holder != release):
            return False
        self.index += 1
        self.kv[key] = (value.encode() if isinstance(value, str) else value, self.index)
        if acquire is not None:
            self.locks[key] = acquire
        if release is not None:
            del self.locks[key]
        return True

    def list_prefix(self, prefix: str) -> dict[str, KeyRead]:
        return self.read_prefix(prefix)[1]

    def delete_key(self, key: str, cas: int | None = None) -> bool:
        self.calls["delete_key"] += 1
        current = self.kv.get(key)
        if cas is not None and (current[1] if current else 0) != cas:
            return False
        self.index += 1
        self.kv.pop(key, None)
        self.locks.pop(key, None)
        return True

    def members(self, environment: str, index: int = 0, wait: float | None = None,
                roles: Collection[str] | None = None, box: str = "") -> tuple[int, list[Member]]:
        self.calls["members"] += 1
        if roles is None:
            return self.index, list(self.members_list)
        return self.index, [m for m in self.members_list if set(m.roles) & set(roles) or m.box == box]

    # -- sessions and the local agent (what the status reporter needs) ------------------------------

    def create_session(self, name: str, ttl: int | None, node: str | None = None, checks: list[str] | None = None) -> str:
        self.calls["create_session"] += 1
        session = str(uuid.UUID(int=next(self._session_ids)))
        self.sessions[session] = {"ID": session, "Name": name, "Node": node or "fake-node", "Behavior": "delete",
                                  "Checks": list(checks or [])}
        return session

    def session_info(self, session_id: str) -> dict[str, Any] | None:
        self.calls["session_info"] += 1
        info = self.sessions.get(session_id)
        return dict(info) if info is not None else None

    def destroy_session(self, session_id: str) -> None:
        self.calls["destroy_session"] += 1
        self.end_session(session_id)

    def end_session(self, session_id: str) -> None:
        """The session ends (destroyed, or invalidated by Consul when a check it is bound to fails): its keys go."""
        if self.sessions.pop(session_id, None) is None:
            return
        for key in [k for k, holder in self.locks.items() if holder == session_id]:
            self.index += 1
            del self.kv[key], self.locks[key]

    def register_agent_service(self, service_id: str, tags: list[str], meta: dict[str, str], check: dict[str, Any]) -> None:
        self.calls["register_agent_service"] += 1
        self.services[service_id] = {"tags": list(tags), "meta": dict(meta), "check": dict(check)}

    def agent_has_service(self, service_id: str) -> bool:
        self.calls["agent_has_service"] += 1
        return service_id in self.services


class RecordingLog:
    """A structlog-like logger keeping each line as (level, event, fields), and a counter: what a watch's
    ``WatchFailures`` or the status reporter is given, so a test can count log lines and metric increments."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, object]]] = []
        self.count = 0

    def _line(self, level: str, event: str, fields: dict[str, object]) -> None:
        self.lines.append((level, event, fields))

    def debug(self, event: str, **fields: object) -> None:
        self._line("debug", event, fields)

    def info(self, event: str, **fields: object) -> None:
        self._line("info", event, fields)

    def warning(self, event: str, **fields: object) -> None:
        self._line("warning", event, fields)

    def error(self, event: str, **fields: object) -> None:
        self._line("error", event, fields)

    def exception(self, event: str, **fields: object) -> None:
        self._line("exception", event, fields)

    def bind(self, **fields: object) -> RecordingLog:
        return self

    def events(self, level: str | None = None) -> list[str]:
        return [event for lvl, event, _ in self.lines if level is None or lvl == level]

    def inc(self) -> None:
        self.count += 1


@dataclass
class FakeService:
    active: bool = True
    held: bool = False
    running_job: bool = False
    #: A transitional state the manager reports instead of running/stopped (e.g. STOPPING).
    phase: RunState | None = None


@dataclass
class FakeBackend(ServiceBackend):
    services: dict[str, FakeService]
    fail_stop: set[str] = field(default_factory=set)
    calls: list[str] = field(default_factory=list)
    kind: str = "fake"

    def _get(self, name: str) -> FakeService:
        if name not in self.services:
            raise BackendError(f"no such service {name}")
        return self.services[name]

    def expand(self, names: Sequence[str]) -> list[str]:
        for name in names:
            self._get(name)
        return list(names)

    def run_state(self, name: str) -> RunState:
        service = self._get(name)
        if service.phase is not None:
            return service.phase
        return RunState.RUNNING if service.active else RunState.STOPPED

    def stop(self, name: str) -> None:
        self.calls.append(f"stop {name}")
        if name in self.fail_stop:
            raise BackendError(f"stop {name}: refused")
        self._get(name).active = False

    def start(self, name: str) -> None:
        self.calls.append(f"start {name}")
        self._get(name).active = True

    def can_hold(self, name: str) -> bool:
        return True

    def is_held(self, name: str) -> bool:
        return self._get(name).held

    def hold(self, name: str) -> None:
        self.calls.append(f"hold {name}")
        self._get(name).held = True

    def release(self, name: str) -> None:
        self.calls.append(f"release {name}")
        self._get(name).held = False

    def running_jobs(self, name: str) -> list[str]:
        return [f"{name}-run"] if self._get(name).running_job else []

    def stop_running_job(self, name: str) -> None:
        self.calls.append(f"stop-run {name}")
        self._get(name).running_job = False


class FakeRuntime(MapRuntime):
    """HAProxy's runtime API over one live map; ``error`` makes every call fail with it."""

    def __init__(self, live: dict[str, str] | None = None, error: Exception | None = None):
        self.live = dict(live or {"state": "off"})
        self.error = error
        self.history: list[dict[str, str]] = []

    def show_map(self, map_path: Path) -> dict[str, str]:
        if self.error:
            raise self.error
        return dict(self.live)

    def replace_map(self, map_path: Path, entries: Mapping[str, str]) -> None:
        if self.error:
            raise self.error
        self.live = dict(entries)
        self.history.append(dict(entries))


class FakeVerifier(Verifier):
    """A frontend verifier that reports the given failures (none: the frontend answers as expected)."""

    def __init__(self, failures: list[str]):
        self.failures = failures
        self.runs = 0

    def verify(self) -> list[str]:
        self.runs += 1
        return self.failures

    run_once = verify


@dataclass
class FakePeers(Peers):
    members_list: list[Member] = field(default_factory=list)
    statuses: dict[str, Status | None] = field(default_factory=dict)
    watched: list[tuple[str, ...]] = field(default_factory=list)

    def members(self, roles: Collection[str] | None = None) -> list[Member]:
        return list(self.members_list)

    def snapshot(self, boxes: Sequence[str]) -> dict[str, Status | None]:
        return {b: self.statuses.get(b) for b in boxes}

    def watch(self, boxes: Sequence[str]) -> None:
        self.watched.append(tuple(boxes))

    def unwatch(self) -> None:
        self.watched.append(())

    def read_budget(self) -> float:
        return 0.0


class RecordingStep(Step):
    """Holds a boolean 'applied'; records every call; can be told to fail or be pending."""

    def __init__(self, name: str, role: Role, journal: list[str]):
        self.name = name
        self.role = role
        self.journal = journal
        self.applied = False
        self.fail_next = 0
        self.pending: str | None = None
        self.lie = False  # apply() reports success but nothing holds

    def check(self, ctx: StepContext, target: Mode) -> bool:
        return self.applied == (target is Mode.MAINTENANCE)

    def apply(self, ctx: StepContext) -> None:
        self._act("apply", True)

    def revert(self, ctx: StepContext) -> None:
        self._act("revert", False)

    def _act(self, verb: str, value: bool) -> None:
        self.journal.append(f"{verb}:{self.name}")
        if self.fail_next:
            self.fail_next -= 1
            raise StepError(self.name, f"{verb} failed on purpose")
        if self.pending:
            raise StepPending(self.pending, recheck_after=0.01)
        if not self.lie:
            self.applied = value


def read(value: bytes | None, modify_index: int) -> KeyChanged:
    return KeyChanged("maintenance/t/desired", KeyRead(index=modify_index, value=value, modify_index=modify_index if value is not None else 0))


def sample(metrics: AgentMetrics, name: str, **labels: str) -> float | None:
    """One sample of an agent's metrics as a scrape would see it (its registry's public API); None when not exported."""
    return metrics.registry.get_sample_value(name, labels)


QUICK_RETRY = BackoffPolicy(base=1.0, cap=0.05)
"""A failed step of a test's reconciler is retried within 50 ms."""


def make_reconciler(tmp_path: Path, roles: Sequence[Role], steps: dict[Role, list[Step]], peers: FakePeers | None = None,
                    node: str = "box-1", on_tick: Callable[[], None] | None = None,
                    retry: BackoffPolicy = QUICK_RETRY) -> tuple[Reconciler, list[Status]]:
    published: list[Status] = []
    peers = peers or FakePeers()
    if not any(m.box == node for m in peers.members_list):
        peers.members_list.append(Member(node, tuple(r.value for r in roles), node, True))
    reconciler = Reconciler(
        node=node, roles=roles, order=list(Role), steps=steps,
        memory=StateFile(tmp_path / "state.json"), peers=peers,
        publish=published.append, metrics=AgentMetrics(), log=structlog.get_logger(),
        retry=retry, resync=0.05, on_tick=on_tick,
    )
    return reconciler, published


def settle(reconciler: Reconciler, ticks: int = 20) -> None:
    """Run ticks until the reconciler has nothing left to do right now (no sleeping)."""
    import time

    for _ in range(ticks):
        wait = reconciler.tick()
        if wait > 0 and reconciler.state.value in ("active", "maintenance"):
            return
        time.sleep(min(wait, 0.06))
