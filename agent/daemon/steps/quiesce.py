"""Remember how a set of services looked before maintenance, stop them, restore exactly that.

Shared by the worker step (services) and the scheduler step (jobs). The
snapshot is a JSON list of ``{"name", "active", "enabled"}`` records kept in
the step's notes: taken once per window, before anything is stopped, so a
re-run after a crash never mistakes the half-stopped box for its normal state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypedDict

from agent.core.errors import StepError, StepPending
from agent.daemon.backends.base import BackendError, RunState, ServiceBackend


class ServiceRecord(TypedDict):
    name: str
    active: bool
    enabled: bool


def take_snapshot(backend: ServiceBackend, names: Sequence[str]) -> list[ServiceRecord]:
    """What each (expanded) service looks like now; one that is on its way up counts as running."""
    return [
        ServiceRecord(
            name=name,
            active=backend.run_state(name).up_or_coming,
            enabled=backend.tracks_enablement(name) and backend.is_enabled(name),
        )
        for name in backend.expand(names)
    ]


def snapshot_from_notes(notes: dict[str, Any]) -> list[ServiceRecord] | None:
    raw = notes.get("snapshot")
    if raw is None:
        return None
    return [ServiceRecord(name=str(r["name"]), active=bool(r["active"]), enabled=bool(r["enabled"])) for r in raw]


def union(first: Sequence[str], second: Sequence[str]) -> list[str]:
    """Both lists' names, each once, in order of first appearance."""
    return list(dict.fromkeys([*first, *second]))


def quiesce(backend: ServiceBackend, names: Sequence[str], heartbeat: Callable[[], None] = lambda: None) -> None:
    """Disable (where the manager has that notion) and stop every service; idempotent.

    A service already ``STOPPING`` is not asked again: ``still_up`` keeps
    reporting it until it has stopped.
    """
    for name in names:
        heartbeat()
        if backend.tracks_enablement(name) and backend.is_enabled(name):
            backend.disable(name)
            heartbeat()
        if backend.run_state(name).up_or_coming:
            heartbeat()
            backend.stop(name)


def still_up(backend: ServiceBackend, names: Sequence[str]) -> dict[str, str]:
    """Services not yet down, each with why ("running", "starting", "stopping", "enabled"); empty when ``quiesce`` holds."""
    up: dict[str, str] = {}
    for name in names:
        state = backend.run_state(name)
        if state is not RunState.STOPPED:
            up[name] = state.value
        elif backend.tracks_enablement(name) and backend.is_enabled(name):
            up[name] = "enabled"
    return up


def only_finishing(reasons: dict[str, str]) -> bool:
    """True when everything left is a manager finishing what it was asked (stopping/starting): wait, do not fail."""
    return bool(reasons) and all(why in (RunState.STOPPING.value, RunState.STARTING.value) for why in reasons.values())


def describe(reasons: dict[str, str]) -> str:
    return ", ".join(f"{name} ({why})" for name, why in reasons.items())


def restore(backend: ServiceBackend, snapshot: Sequence[ServiceRecord], heartbeat: Callable[[], None] = lambda: None) -> None:
    """Enable and start again exactly what the snapshot says was enabled/running, last stopped first.

    A service still ``STOPPING`` (a stop that outlasted its timeout, or an agent
    killed mid-stop) is left to finish stopping: it is started on a later pass.
    """
    for record in reversed(snapshot):
        heartbeat()
        if record["enabled"] and not backend.is_enabled(record["name"]):
            backend.enable(record["name"])
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
        elif record["enabled"] and not backend.is_enabled(record["name"]):
            missing[record["name"]] = "not enabled"
    return missing


def describe_up(backend: ServiceBackend, names: Sequence[str]) -> list[str]:
    """What ``still_up`` finds, said the way an operator reads a drift: "billing running", "nightly.timer running, enabled"."""
    found = []
    for name in names:
        state = backend.run_state(name)
        up = [] if state is RunState.STOPPED else [state.value]
        if backend.tracks_enablement(name) and backend.is_enabled(name):
            up.append("enabled")
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
    return {"ran_before": [dict(r) for r in snapshot if r["active"] or r["enabled"]], "restored_at": now}


def restore_from_notes(step_name: str, backend: ServiceBackend, notes: dict[str, Any], verb: str,
                       heartbeat: Callable[[], None] = lambda: None) -> bool:
    """Bring back what the snapshot in ``notes`` says ran (or was enabled) before the window.

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
