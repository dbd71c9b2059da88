"""The protocol every step follows, and the context it is given.

A step is one idempotent action of a role (put the node into Consul
maintenance, stop the workers, switch HAProxy...). The reconciler drives it:

    if not step.check(ctx, target):
        step.apply(ctx)   if target is MAINTENANCE
        step.revert(ctx)  if target is ACTIVE
        if not step.check(ctx, target): -> StepError (retried, reported)

so re-running after a crash converges. A step never decides *whether* to act
(that is the reconciler's job) and never waits on other boxes (gates do).
It raises ``StepError`` with the exact command/unit/URL and its answer when
something fails, or ``StepPending`` while something it started is still
finishing (e.g. a job draining).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import structlog

from agent.core.model import Intent, Mode, Role
from agent.daemon.local.statefile import StateFile


@dataclass(frozen=True)
class StepContext:
    """What a step may look at: the intent it acts for, and its own notes."""

    intent: Intent
    node: str
    memory: StateFile
    log: Any = structlog.get_logger()
    #: Call between the blocking calls of a long step (one per service, per
    #: check): it feeds systemd's watchdog, so a slow but alive step is not killed.
    heartbeat: Callable[[], None] = lambda: None

    def notes(self, step: Step) -> dict[str, Any]:
        """This step's notes in the state file (what it saw before acting)."""
        return self.memory.get(f"step:{step.name}", {}) or {}

    def save_notes(self, step: Step, notes: dict[str, Any] | None) -> None:
        self.memory.put(f"step:{step.name}", notes)


class Step(abc.ABC):
    """One idempotent action of one role."""

    #: Unique within a box, stable across restarts (it keys the step's notes).
    name: str = ""
    role: Role
    #: When True the reconciler re-checks the step while the box is settled and
    #: repairs drift (e.g. HAProxy restarted with an old map file).
    repairs_drift: bool = False
    #: "repair": drift is undone (logged once, counted); "report": it is left alone and
    #: shown in the box's status (a role configured with ``drift = "report"``).
    on_drift: Literal["repair", "report"] = "repair"
    #: True when ``drift(quick=True)`` asks only local things (HAProxy's socket, the
    #: service manager, a file): the drift watch runs it every few seconds. Steps
    #: whose check is a Consul request leave it False (they are re-checked every resync).
    local_check: bool = False

    @abc.abstractmethod
    def check(self, ctx: StepContext, target: Mode) -> bool:
        """True when the step already holds for ``target``; no side effects."""

    def drift(self, ctx: StepContext, target: Mode, quick: bool = False) -> list[str]:
        """What no longer holds for ``target``, one short phrase each; empty when it holds. No side effects.

        ``quick``: only the cheap local part (the drift watch, every few seconds);
        the full check (e.g. requests through the public frontend) is left to the reconciler.
        """
        return [] if self.check(ctx, target) else [f"{self.name} no longer holds"]

    @abc.abstractmethod
    def apply(self, ctx: StepContext) -> None:
        """Make the maintenance side hold. Idempotent."""

    @abc.abstractmethod
    def revert(self, ctx: StepContext) -> None:
        """Make the normal side hold again (undo ``apply``). Idempotent."""

    def describe(self) -> str:
        return f"{self.role.value}/{self.name}"
