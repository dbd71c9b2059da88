"""StepRunner: check → apply/revert → check, the one way a step is made to hold.

Converging a role and repairing drift on a settled box are the same sequence;
they differ only in what they log and how a failure reads. The runner builds
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
from agent.daemon.statefile import StateFile
from agent.daemon.steps.base import Step, StepContext


@dataclass(frozen=True)
class StepRun:
    """How a run ended: every step holds, or ``step`` is still finishing (``pending``) or failed (``error``)."""

    step: str = ""
    pending: StepPending | None = None
    error: str | None = None

    @property
    def holds(self) -> bool:
        return self.pending is None and self.error is None


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

    def converge(self, steps: Iterable[Step], ctx: StepContext, target: Mode) -> StepRun:
        """Make every step hold for ``target``, in the given order; stop at the first that does not."""
        for step in steps:
            self.heartbeat()  # alive between steps too: a run may take several steps, each bounded by its timeout
            run = self._attempt(step, ctx, target, drift=False)
            if not run.holds:
                return run
        return StepRun()

    def repair(self, step: Step, ctx: StepContext, target: Mode) -> StepRun:
        """Make a step of a settled box hold again if it drifted."""
        return self._attempt(step, ctx, target, drift=True)

    def repair_drift(self, steps: Mapping[Role, Sequence[Step]], intent: Intent, target: Mode) -> tuple[Role, StepRun] | None:
        """Repair every drift-repairing step of a settled box (a pending one is left to finish);
        the first failure as (role, run), else None."""
        for role, role_steps in steps.items():
            for step in role_steps:
                if not step.repairs_drift:
                    continue
                run = self.repair(step, self.context(intent, role), target)
                if run.error is not None:
                    return role, run
        return None

    @staticmethod
    def hold(step: Step, ctx: StepContext, target: Mode, drift: bool = False) -> bool:
        """check → apply/revert → check. True if it had to act; ``StepError`` if it still does not hold."""
        if step.check(ctx, target):
            return False
        if drift:
            ctx.log.warning("drift: step no longer holds; repairing", step=step.name)
        else:
            ctx.log.info("step acting", step=step.name, action="apply" if target is Mode.MAINTENANCE else "revert")
        started = time.monotonic()
        (step.apply if target is Mode.MAINTENANCE else step.revert)(ctx)
        if not step.check(ctx, target):
            raise StepError(step.name, "drift repair did not hold" if drift else "did not hold after acting (check() still false)")
        ctx.log.info("step done", step=step.name, seconds=round(time.monotonic() - started, 3))
        return True

    def _attempt(self, step: Step, ctx: StepContext, target: Mode, drift: bool) -> StepRun:
        try:
            self.hold(step, ctx, target, drift=drift)
        except StepPending as pending:
            return StepRun(step.name, pending=pending)
        except MaintenanceAgentError as exc:
            return StepRun(step.name, error=str(exc))
        return StepRun()
