"""SnapshottedUnitsStep: what the worker's services step and the scheduler's jobs step do alike.

Both take a snapshot of their units (services, jobs) once per window, stop
them, and on leaving bring back exactly the snapshot; after the window they
hold what ran before for ``hold_after_window`` seconds. Only what "up" means
(the scheduler also waits for runs in progress) and the words differ, so the
snapshot, the restore, the aftermath and the shape of ``check``/``drift`` are
kept here once.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

from agent.core.errors import StepError, StepPending
from agent.core.model import Mode
from agent.daemon.backends import BackendError, ServiceBackend
from agent.daemon.steps import quiesce
from agent.daemon.steps.base import Step, StepContext


class SnapshottedUnitsStep(Step):
    #: "starting" / "re-enabling": what a restore does, in its messages.
    restore_verb = ""
    #: The drift while a window's snapshot is not restored yet, and the words after each unit missing after the window.
    not_restored_yet = ""
    missing_after = ""

    backend: ServiceBackend
    hold_after_window: float
    clock: Callable[[], float]

    @abc.abstractmethod
    def units(self) -> list[str]:
        """The configured units (names or globs)."""

    @abc.abstractmethod
    def _snapshot_log(self, ctx: StepContext, snapshot: list[quiesce.ServiceRecord]) -> None:
        """The one log line of a new snapshot, naming what counts as up for this kind of unit."""

    @abc.abstractmethod
    def _quiet_in_window(self) -> bool:
        """In a window: nothing of the configured units is up (``check``)."""

    @abc.abstractmethod
    def _up_in_window(self) -> list[str]:
        """In a window: what is up, one phrase each (``drift``); empty exactly when ``_quiet_in_window``."""

    def check(self, ctx: StepContext, target: Mode) -> bool:
        try:
            return self._quiet_in_window() if target is Mode.MAINTENANCE else self._back_to_normal(ctx)
        except BackendError as exc:
            raise StepError(self.name, exc.detail) from None

    def drift(self, ctx: StepContext, target: Mode, quick: bool = False) -> list[str]:
        try:
            return self._up_in_window() if target is Mode.MAINTENANCE else self._drift_after_window(ctx)
        except BackendError as exc:
            raise StepError(self.name, exc.detail) from None

    def _back_to_normal(self, ctx: StepContext) -> bool:
        """Back only once the window's snapshot is consumed: a snapshot left by a window that never completed
        must not be reused by the next one (revert restores what is missing, then clears it)."""
        return quiesce.snapshot_from_notes(ctx.notes(self)) is None and not self._missing_after_window(ctx)

    def _drift_after_window(self, ctx: StepContext) -> list[str]:
        if quiesce.snapshot_from_notes(ctx.notes(self)) is not None:
            return [self.not_restored_yet]
        return [f"{missing}, {self.missing_after}" for missing in self._missing_after_window(ctx)]

    def _held(self, ctx: StepContext) -> list[quiesce.ServiceRecord]:
        held = quiesce.held_after_window(ctx.notes(self), self.clock(), self.hold_after_window)
        if not held:
            return []
        configured = set(self.backend.expand(self.units()))  # a unit dropped from the config is not held
        return [r for r in held if r["name"] in configured]

    def _missing_after_window(self, ctx: StepContext) -> list[str]:
        return [f"{name} ({why})" for name, why in quiesce.not_restored(self.backend, self._held(ctx)).items()]

    def _quiesce_snapshotted(self, ctx: StepContext) -> tuple[list[str], dict[str, str]]:
        """Snapshot once, then hold and stop the snapshot's units and what the globs match now; what is still up."""
        notes = ctx.notes(self)
        snapshot = quiesce.snapshot_from_notes(notes)
        if snapshot is None:
            snapshot = quiesce.take_snapshot(self.backend, self.units())
            ctx.save_notes(self, {"snapshot": snapshot, "intent_index": ctx.intent.index})
            self._snapshot_log(ctx, snapshot)
        # What a glob matches only now (started after the snapshot) joins the snapshot before it is touched:
        # held and stopped, never started again, and released at the end like the rest.
        known = {r["name"] for r in snapshot}
        late = [quiesce.record_of(self.backend, name, active=False) for name in self.backend.expand(self.units()) if name not in known]
        if late:
            snapshot = [*snapshot, *late]
            ctx.save_notes(self, {**ctx.notes(self), "snapshot": snapshot})
        names = [r["name"] for r in snapshot]
        quiesce.quiesce(self.backend, names, ctx.heartbeat)
        up = quiesce.still_up(self.backend, names)
        if quiesce.only_finishing(up):
            raise StepPending(f"waiting for {self.backend.kind} to finish stopping {quiesce.describe(up)}", recheck_after=1.0)
        return names, up

    def revert(self, ctx: StepContext) -> None:
        notes = ctx.notes(self)
        if quiesce.restore_from_notes(self.name, self.backend, notes, verb=self.restore_verb, heartbeat=ctx.heartbeat):
            snapshot = quiesce.snapshot_from_notes(notes) or []
            ctx.save_notes(self, quiesce.after_window_notes(snapshot, self.clock()) if self.hold_after_window > 0 else None)
            return
        try:
            held = self._held(ctx)
        except BackendError as exc:
            raise StepError(self.name, exc.detail) from None
        quiesce.restore_from_notes(self.name, self.backend, {"snapshot": held}, verb=self.restore_verb, heartbeat=ctx.heartbeat)
