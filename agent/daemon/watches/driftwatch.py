"""DriftWatch: notice within seconds that a settled box no longer holds, at no cost to Consul.

The reconciler re-checks every drift-checked step each ``resync_seconds``
(30 s by default), and some of those checks are Consul requests (node
maintenance). A configuration-management run that re-ships the HAProxy map
with ``state off``, or "ensures" a worker is running, would go unnoticed for
that long. The steps whose check is local (HAProxy's runtime API and map
file, the service manager, the flag file: ``Step.local_check``) are cheap, so
this thread looks at them every ``drift_check_seconds`` while the box is
settled, and wakes the reconciler when what drifts changes. It never acts:
the reconciler's thread stays the only one that does, and repairs (or
reports) what it finds on that wake-up.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from agent.core.errors import MaintenanceAgentError, StepPending
from agent.core.model import Intent, Mode, Role
from agent.daemon.local.statefile import StateFile
from agent.daemon.steps.base import Step, StepContext

SettledView = Callable[[], tuple[Intent | None, Mode | None]]
"""The intent and the mode the box is settled at (mode None while it is moving)."""


class DriftWatch:
    def __init__(self, node: str, steps: Mapping[Role, Sequence[Step]], view: SettledView, wake: Callable[[], None],
                 memory: StateFile, log: Any, interval: float):
        self.node = node
        self.local = [(role, step) for role, role_steps in steps.items() for step in role_steps if step.repairs_drift and step.local_check]
        self.view = view
        self.wake = wake
        self.memory = memory
        self.log = log
        self.interval = interval
        self._seen: frozenset[str] = frozenset()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"drift:{node}", daemon=True)

    def start(self) -> None:
        if self.local:
            self._thread.start()

    def stop(self, wait: float = 1.0) -> None:
        """Stop looking; wait briefly for a probe in flight. A probe stuck in a backend call (up to its timeout) is
        left behind: the watch never acts, and the agent's stop is bounded by the action in flight, not by a probe."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=wait)

    def alive(self) -> bool:
        return self._thread.is_alive() or not self.local

    def look(self) -> bool:
        """Check the local steps once; True when what drifts changed (and the reconciler was woken)."""
        intent, target = self.view()
        if intent is None or target is None:
            self._seen = frozenset()  # moving: the transition checks every step itself
            return False
        drifting = frozenset(name for name in (self._probe(role, step, intent, target) for role, step in self.local) if name)
        changed, self._seen = drifting != self._seen, drifting
        if changed:
            self.log.info("drift watch: local steps changed; waking the reconciler", drifting=sorted(drifting))
            self.wake()
        return changed

    def _probe(self, role: Role, step: Step, intent: Intent, target: Mode) -> str | None:
        """``role/step`` when it drifted (or cannot be checked: the reconciler's own pass says why), else None."""
        ctx = StepContext(intent=intent, node=self.node, memory=self.memory, log=self.log.bind(role=role.value))
        try:
            return f"{role.value}/{step.name}" if step.drift(ctx, target, quick=True) else None
        except StepPending:
            return None
        except MaintenanceAgentError:
            return f"{role.value}/{step.name} (check failed)"

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.look()
            except Exception as exc:  # a bug in a probe must not end the watch (logged)
                self.log.exception("drift watch failed", error=str(exc))
