"""BoxRecord: what the box remembers of its own progress and what it says about itself.

It owns the ``machine`` section of the state file (state, since, intent index
and per-role progress, so a restart resumes where the box was) and the
conditions shown beside the state (``error``, ``blocked_on``); ``status()``
turns them into the ``Status`` the reporter writes under ``status/<node>``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from agent import __version__
from agent.core.decide import Progress
from agent.core.model import Intent, Mode, Role, State, Status
from agent.daemon.local.statefile import StateFile


class BoxRecord:
    def __init__(self, node: str, roles: Sequence[Role], memory: StateFile, clock: Callable[[], datetime]):
        self.node = node
        self.roles = list(roles)
        self.memory = memory
        self.clock = clock
        self.load()
        #: What failed last (a step, a gate), until it succeeds.
        self.error: str | None = None
        #: What the box waits for without failing (a gate, a draining step).
        self.blocked_on: str | None = None
        #: Why the box is held as it is (its state file is unusable); it then reports ``unknown``.
        self.held: str | None = None
        #: Drift found on the settled box and only reported (``drift = "report"``), until it is gone.
        self.drift: str | None = None
        #: The state in memory moved on but could not be saved: nothing may act until it is (``save_pending``).
        self.unsaved = False

    def load(self) -> State:
        """Take the machine section from the state file (again, after an operator reset it)."""
        saved = self.memory.get("machine", {}) or {}
        #: The state the box was in when the agent stopped (active on a first start).
        self.initial = State(saved.get("state", State.ACTIVE.value))
        self.since: datetime = datetime.fromisoformat(saved["since"]) if saved.get("since") else self.clock()
        self.progress = Progress(int(saved.get("intent_index", 0)), dict(saved.get("progress", {})))
        return self.initial

    def clear(self) -> None:
        """Nothing failed, nothing waited for (a transition starts, a run of steps holds)."""
        self.error = None
        self.blocked_on = None

    def show_blocked(self, blocked_on: str | None) -> bool:
        """Set ``blocked_on``; True if that changed it (worth a log line and a publish)."""
        changed = blocked_on != self.blocked_on
        self.blocked_on = blocked_on
        return changed

    def show_drift(self, reported: Sequence[str], log: Any) -> bool:
        """Set the drift shown in the status (logged once per change); True if that changed it."""
        shown = "; ".join(reported) or None
        if shown == self.drift:
            return False
        if shown:
            log.warning("drift found; only reported (drift = report)", drift=shown)
        else:
            log.info("reported drift is gone", was=self.drift)
        self.drift = shown
        return True

    def follow_intent(self, index: int, state: State) -> bool:
        """Count the roles' progress for intent ``index`` from now on, each at ``state``; False when it already is."""
        if self.progress.intent_index == index:
            return False
        self.progress = Progress(index, {r.value: state.value for r in self.roles})
        return True

    def save(self, state: State) -> None:
        """Save the machine's state and progress; ``StateFileUnwritable`` leaves ``unsaved`` set."""
        self.unsaved = True
        self.memory.put("machine", {
            "state": state.value,
            "since": self.since.isoformat(),
            "intent_index": self.progress.intent_index,
            "progress": self.progress.roles,
        })
        self.unsaved = False

    def save_pending(self, state: State) -> None:
        """Before anything acts: save what a failed save left in memory only (raises while it still cannot be written).

        A box that acted on a state it could not save would redo or forget it after a restart."""
        if self.unsaved:
            self.save(state)

    def status(self, state: State, intent: Intent | None, intent_error: str | None, now: datetime) -> Status:
        scheduled = None
        if intent and intent.starts_at and state is State.ACTIVE and intent.mode is Mode.MAINTENANCE and now < intent.starts_at:
            scheduled = intent.starts_at.isoformat()
        progress = dict(self.progress.roles) if self.progress.roles else {r.value: state.value for r in self.roles}
        shown = state
        if self.held is not None:  # never claim a state the box cannot know: gates stay shut on it
            shown, progress = State.UNKNOWN, {r.value: State.UNKNOWN.value for r in self.roles}
        return Status(
            node=self.node,
            roles=tuple(r.value for r in self.roles),
            state=shown,
            intent_index=self.progress.intent_index,
            since=self.since,
            error=self.error,
            blocked_on=("scheduled for " + scheduled) if scheduled and not self.blocked_on else self.blocked_on,
            version=__version__,
            progress=progress,
            desired=intent.mode.value if intent else None,
            scheduled_for=scheduled,
            intent_error=intent_error,
            drift=self.drift,
        )
