"""Remember how a set of services looked before maintenance, hold and stop them, restore exactly that.

Shared by the worker step (services) and the scheduler step (jobs). The
snapshot is a JSON list of ``{"name", "active", "held"}`` records kept in the
step's notes: taken once per window, before anything is stopped, so a re-run
after a crash never mistakes the half-stopped box for its normal state.

Order matters for a power cut at any moment: a service is held (it will not
start on its own, at boot or by a timer) *before* it is stopped, and released
before it is started again. What was already held before the window (a
service disabled through the command backend) stays held.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypedDict

from agent.core.errors import StepError, StepPending
from agent.daemon.backends.base import BackendError, RunState, ServiceBackend


class ServiceRecord(TypedDict):
    name: str
    active: bool
    #: Held before the window (the command backend's "disabled"): the window's end leaves it held.
    held: bool


def record_of(backend: ServiceBackend, name: str, active: bool | None = None) -> ServiceRecord:
    """How ``name`` looks now (``active`` given: a name found only mid-window, which is never started again)."""
    running = backend.run_state(name).up_or_coming if active is None else active
    return ServiceRecord(name=name, active=running, held=backend.can_hold(name) and backend.is_held(name))


def take_snapshot(backend: ServiceBackend, names: Sequence[str]) -> list[ServiceRecord]:
    """What each (expanded) service looks like now; one that is on its way up counts as running."""
    return [record_of(backend, name) for name in backend.expand(names)]


def snapshot_from_notes(notes: dict[str, Any]) -> list[ServiceRecord] | None:
    raw = notes.get("snapshot")
    if raw is None:
        return None
    return [ServiceRecord(name=str(r["name"]), active=bool(r["active"]), held=bool(r["held"])) for r in raw]


def quiesce(backend: ServiceBackend, names: Sequence[str], heartbeat: Callable[[], None] = lambda: None) -> None:
    """Hold (where the manager can) and then stop every service; idempotent.

    A service already ``STOPPING`` is not asked again: ``still_up`` keeps
    reporting it until it has stopped.
    """
    for name in names:
        heartbeat()
        if backend.can_hold(name) and not backend.is_held(name):
            backend.hold(name)
            heartbeat()
        if backend.run_state(name).up_or_coming:
            heartbeat()
            backend.stop(name)


def still_up(backend: ServiceBackend, names: Sequence[str]) -> dict[str, str]:
    """Services not yet down, each with why ("running", "starting", "stopping", "not held"); empty when ``quiesce`` holds."""
    up: dict[str, str] = {}
    for name in names:
        state = backend.run_state(name)
        if state is not RunState.STOPPED:
            up[name] = state.value
        elif backend.can_hold(name) and not backend.is_held(name):
            up[name] = "not held"
    return up


def only_finishing(reasons: dict[str, str]) -> bool:
    """True when everything left is a manager finishing what it was asked (stopping/starting): wait, do not fail."""
    return bool(reasons) and all(why in (RunState.STOPPING.value, RunState.STARTING.value) for why in reasons.values())


def describe(reasons: dict[str, str]) -> str:
    return ", ".join(f"{name} ({why})" for name, why in reasons.items())


def _release_due(backend: ServiceBackend, record: ServiceRecord) -> bool:
    """Held now by the window, not from before it."""
    return not record["held"] and backend.can_hold(record["name"]) and backend.is_held(record["name"])


def restore(backend: ServiceBackend, snapshot: Sequence[ServiceRecord], heartbeat: Callable[[], None] = lambda: None) -> None:
    """Release what the window held, then start again exactly what the snapshot says was running, last stopped first.

    A service still ``STOPPING`` (a stop that outlasted its timeout, or an agent
    killed mid-stop) is left to finish stopping: it is started on a later pass.
    """
    for record in reversed(snapshot):
        heartbeat()
        if _release_due(backend, record):
            backend.release(record["name"])
            heartbeat()
        if record["active"] and backend.run_state(record["name"]) is RunState.STOPPED:
            heartbeat()
            backend.start(record["name"])


def not_restored(backend: ServiceBackend, snapshot: Sequence[ServiceRecord]) -> dict[str, str]:
    """Snapshot entries that are not back as they were, each with why; empty when ``restore`` holds.

    Only ``RUNNING`` counts as back: a service still starting may yet fail.
    """
    missing: dict[str, str] = {}
    for record in snapshot:
        state = backend.run_state(record["name"]) if record["active"] else None
        if state is not None and state is not RunState.RUNNING:
            missing[record["name"]] = "not running" if state is RunState.STOPPED else state.value
        elif _release_due(backend, record):
            missing[record["name"]] = "still held"
    return missing


def describe_up(backend: ServiceBackend, names: Sequence[str]) -> list[str]:
    """What ``still_up`` finds, said the way an operator reads a drift: "billing running", "nightly.timer running, not held"."""
    found = []
    for name in names:
        state = backend.run_state(name)
        up = [] if state is RunState.STOPPED else [state.value]
        if backend.can_hold(name) and not backend.is_held(name):
            up.append("not held")
        if up:
            found.append(f"{name} {', '.join(up)}")
    return found


def held_after_window(notes: dict[str, Any], now: float, hold: float) -> list[ServiceRecord]:
    """What ran before the last window, while the window's aftermath lasts (``hold`` seconds after the restore)."""
    raw = notes.get("ran_before")
    restored_at = notes.get("restored_at")
    if raw is None or restored_at is None or now - float(restored_at) >= hold:
        return []
    return snapshot_from_notes({"snapshot": raw}) or []


def after_window_notes(snapshot: Sequence[ServiceRecord], now: float) -> dict[str, Any]:
    """The notes a step keeps once its window's snapshot is restored: what ran before, and since when it is back."""
    return {"ran_before": [dict(r) for r in snapshot if r["active"] or not r["held"]], "restored_at": now}


def restore_from_notes(step_name: str, backend: ServiceBackend, notes: dict[str, Any], verb: str,
                       heartbeat: Callable[[], None] = lambda: None) -> bool:
    """Bring back what the snapshot in ``notes`` says ran (and was not held) before the window.

    Returns False when there is no snapshot (nothing was ever stopped), True once
    everything is observed back; raises ``StepPending`` while a service is still
    stopping or starting, ``StepError`` naming what did not come back.
    """
    snapshot = snapshot_from_notes(notes)
    if snapshot is None:
        return False
    try:
        restore(backend, snapshot, heartbeat)
        missing = not_restored(backend, snapshot)
    except BackendError as exc:
        raise StepError(step_name, exc.detail) from None
    if only_finishing(missing):
        raise StepPending(f"{verb}: waiting for {backend.kind} to finish with {describe(missing)}", recheck_after=1.0)
    if missing:
        raise StepError(step_name, f"not back after {verb} ({backend.kind}): {describe(missing)}")
    return True
