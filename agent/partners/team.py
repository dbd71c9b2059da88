"""TeamWatch: the team's chat hears when this box is stuck in a transition, and when the window runs over.

The window events (announce, scheduled, start, end, withdrawn) reach the chat
like a partner's notices (``NoticeDispatcher``). Two more matter to the people
on the call, and any box sees them: **blocked** — this box has been entering
or leaving with a step failing or pending (the alert gate, a smoke test, a job
draining) for ``blocked_after_seconds``; a gate waiting on another box is not
this box's block and is left to that box; **overrun** — the announced end
passed while this box is not back to active (what
``maintenance_window_overrun_seconds`` measures). Each is claimed in Consul
like a notice (``<intent>-blocked-<node>``, ``<intent>-overrun``), so a box
tells its block once per intent, and the fleet tells an overrun once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from agent.core.model import Intent, Mode, State, Status
from agent.partners.chat import blocked_text, overrun_text


class TeamChannel(Protocol):
    def post_team(self, event_id: str, event: str, text: str) -> object: ...


def _utc_now() -> datetime:
    return datetime.now(UTC)


class TeamWatch:
    """``tick()`` runs every few seconds on the agent's scheduler; it only reads the box's status and posts."""

    def __init__(self, channel: TeamChannel, environment: str, node: str, blocked_after: float,
                 box: Callable[[], tuple[Status, Intent | None]], clock: Callable[[], datetime] = _utc_now):
        self.channel = channel
        self.environment = environment
        self.node = node
        self.blocked_after = blocked_after
        self.box = box
        self.clock = clock
        self._lock = threading.Lock()
        self._blocked_since: tuple[tuple[int, State], datetime] | None = None
        self._told: set[str] = set()

    def tick(self) -> None:
        with self._lock:
            status, intent = self.box()
            if intent is None or intent.index == 0:
                return
            now = self.clock()
            self._blocked(status, intent, now)
            self._overrun(status, intent, now)

    def _blocked(self, status: Status, intent: Intent, now: datetime) -> None:
        why = status.error or status.blocked_on
        if status.state not in (State.ENTERING, State.EXITING) or not why or why.startswith("gate "):
            self._blocked_since = None
            return
        key = (intent.index, status.state)
        if self._blocked_since is None or self._blocked_since[0] != key:
            self._blocked_since = (key, now)
        seconds = (now - self._blocked_since[1]).total_seconds()
        event_id = f"{intent.index}-blocked-{self.node}"
        if seconds >= self.blocked_after and event_id not in self._told:
            self._told.add(event_id)
            self.channel.post_team(event_id, "blocked", blocked_text(self.environment, self.node, intent.index, status.state.value, why, seconds))

    def _overrun(self, status: Status, intent: Intent, now: datetime) -> None:
        if intent.mode is not Mode.MAINTENANCE or intent.ends_at is None or now <= intent.ends_at or status.state is State.ACTIVE:
            return
        event_id = f"{intent.index}-overrun"
        if event_id not in self._told:
            self._told.add(event_id)
            self.channel.post_team(event_id, "overrun", overrun_text(self.environment, intent.index, intent.ends_at, self.node, status.state.value))
