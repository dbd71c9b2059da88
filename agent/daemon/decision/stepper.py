"""StepRunner: check → apply/revert → check, the one way a step is made to hold.

Converging a role and repairing drift on a settled box are the same sequence;
they differ only in what they log and how a failure reads, and in that drift
is described first (``Step.drift``) so the one log line of a repair says what
changed, and a step configured to only report drift is left alone. The runner builds
the ``StepContext`` a step sees (its log bound to the role and intent, the
watchdog heartbeat for long steps) and turns what a step raises into a
``StepRun`` value the reconciler reports from. It never decides whether to act
and never waits: ``StepPending`` comes back as a value too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agent.core.errors import MaintenanceAgentError, StepError, StepPending
from agent.core.model import Intent, Mode, Role
from agent.daemon.local.statefile import StateFile, StateFileUnwritable
from agent.daemon.steps.base import Step, StepContext


@dataclass(frozen=True)
class StepRun:
    """How a run ended: every step holds, or ``step`` is still finishing (``pending``) or failed (``error``)."""

    step: str = ""
    pending: StepPending | None = None
    error: str | None = None
    #: The typed error behind ``error``: its class says how soon a retry may help.
    failure: MaintenanceAgentError | None = None

    @property
    def holds(self) -> bool:
        return self.pending is None and self.error is None


@dataclass(frozen=True)
class Drift:
    """One step of a settled box that no longer held: what had changed."""

    role: Role
    step: str
    changed: tuple[str, ...]

    def describe(self) -> str:
        return f"{self.role.value}/{self.step}: {', '.join(self.changed)}"


@dataclass(frozen=True)
class DriftPass:
    """One look at every drift-checked step: what was repaired, what is only reported, the first failure."""

    repaired: tuple[Drift, ...] = ()
    reported: tuple[Drift, ...] = ()
    failed: tuple[Role, StepRun] | None = None

    def labels(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """(role, step) of what was repaired, and of what is reported."""
        return [(d.role.value, d.step) for d in self.repaired], [(d.role.value, d.step) for d in self.reported]

    def describe_reported(self) -> list[str]:
        return [d.describe() for d in self.reported]


class StepRunner:
    def __init__(self, node: str, memory: StateFile, log: Any, heartbeat: Callable[[], None] | None = None):
        self.node = node
        self.memory = memory
        self.log = log
        self.heartbeat = heartbeat or (lambda: None)

    def context(self, intent: Intent, role: Role) -> StepContext:
        """What a step of ``role`` sees while acting for ``intent``."""
        return StepContext(intent=intent, node=self.node, memory=self.memory,
                           log=self.log.bind(role=role.value, intent_index=intent.index), heartbeat=self.heartbeat)

    def converge(self, steps: Iterable[Step], ctx: StepContext, target: Mode, settled: bool = False) -> StepRun:
        """Make every step hold for ``target``, in the given order; stop at the first that does not.

        ``settled``: the box is already there (a new intent of the same mode); steps that only
        report drift are left to ``repair_drift``, which reports them instead of acting.
        """
        for step in steps:
            if settled and step.on_drift == "report":
                continue
            self.heartbeat()  # alive between steps too: a run may take several steps, each bounded by its timeout
            run = self._attempt(step, ctx, target)
            if not run.holds:
                return run
        return StepRun()

    def repair_drift(self, steps: Mapping[Role, Sequence[Step]], intent: Intent, target: Mode) -> DriftPass:
        """Look at every drift-checked step of a settled box: repair what drifted (``on_drift = "repair"``),
        collect what is only to be reported; a pending repair is left to finish, the first failure ends the pass."""
        repaired: list[Drift] = []
        reported: list[Drift] = []
        for role, role_steps in steps.items():
            for step in role_steps:
                if not step.repairs_drift:
                    continue
                ctx = self.context(intent, role)
                try:
                    changed = step.drift(ctx, target)
                    if not changed:
                        continue
                    found = Drift(role, step.name, tuple(changed))
                    if step.on_drift == "report":
                        reported.append(found)
                        continue
                    self._repair(step, ctx, target, changed)
                    repaired.append(found)
                except StepPending:
                    continue
                except StateFileUnwritable:
                    raise  # as in converge: the loop's failure (/readyz), not this step's
                except MaintenanceAgentError as exc:
                    # The failure rides along, as in converge: its type says how soon to retry (a 403: the slow rate).
                    return DriftPass(tuple(repaired), tuple(reported), (role, StepRun(step.name, error=str(exc), failure=exc)))
        return DriftPass(tuple(repaired), tuple(reported))

    @staticmethod
    def _repair(step: Step, ctx: StepContext, target: Mode, changed: list[str]) -> None:
        """Undo the drift ``changed`` names; one log line per repair, ``StepError`` if it still does not hold."""
        ctx.log.warning("drift: step no longer holds; repairing", step=step.name, changed=changed)
        (step.apply if target is Mode.MAINTENANCE else step.revert)(ctx)
        still = step.drift(ctx, target)
        if still:
            raise StepError(step.name, "drift repair did not hold: " + ", ".join(still))

    @staticmethod
    def hold(step: Step, ctx: StepContext, target: Mode) -> bool:
        """check → apply/revert → check. True if it had to act; ``StepError`` if it still does not hold."""
        if step.check(ctx, target):
            return False
        ctx.log.info("step acting", step=step.name, action="apply" if target is Mode.MAINTENANCE else "revert")
        started = time.monotonic()
        (step.apply if target is Mode.MAINTENANCE else step.revert)(ctx)
        if not step.check(ctx, target):
            raise StepError(step.name, "did not hold after acting (check() still false)")
        ctx.log.info("step done", step=step.name, seconds=round(time.monotonic() - started, 3))
        return True

    def _attempt(self, step: Step, ctx: StepContext, target: Mode) -> StepRun:
        try:
            self.hold(step, ctx, target)
        except StepPending as pending:
            return StepRun(step.name, pending=pending)
        except StateFileUnwritable:
            raise  # not this step's failure: the box cannot remember anything, the loop reports it
        except MaintenanceAgentError as exc:
            return StepRun(step.name, error=str(exc), failure=exc)
        return StepRun()
