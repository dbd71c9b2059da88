"""IntentInbox: the newest read of the desired key, parsed into the intent the box acts on.

The watcher hands it events from its own thread; the reconciler takes the
newest read on its thread. Only the newest value matters, so a key that
changes ten times between two ticks is parsed once. A value that does not
parse is refused: the current intent stays, the refusal is logged once and
counted, and it shows in the status until a valid value arrives.
"""

from __future__ import annotations

import enum
import threading
from typing import Any

from agent.core.errors import IntentError
from agent.core.intent import parse_intent
from agent.core.model import Intent, Mode, State
from agent.daemon.local.metrics import AgentMetrics
from agent.daemon.watches.watcher import ConsulReachability, KeyChanged, ReadRefused, WatchEvent


class Intake(enum.Enum):
    """What taking the newest read did."""

    ACCEPTED = "accepted"
    REFUSED = "refused"
    #: Consul refused to let this agent read the key (403), or lets it again.
    READ_REFUSED = "read refused"


class IntentInbox:
    def __init__(self, metrics: AgentMetrics, log: Any):
        self.metrics = metrics
        self.log = log
        #: The intent the box acts on (None until the first read).
        self.intent: Intent | None = None
        #: Why the newest value was refused (None when it was accepted).
        self.error: str | None = None
        self._pending: KeyChanged | None = None
        #: A refusal to read (403) to show, or "" when reads pass again; None when nothing changed.
        self._refusal: str | None = None
        self._lock = threading.Lock()

    def offer(self, event: WatchEvent) -> None:
        """A watcher's event (any thread): keep the newest read, record Consul's reachability."""
        with self._lock:
            if isinstance(event, KeyChanged):
                self._pending = event
            elif isinstance(event, ConsulReachability):
                self.metrics.consul_up.set(1 if event.up else 0)
                if event.reminder:
                    self.log.warning("consul still unreachable; holding the current state",
                                     down_for=f"{event.down_seconds / 60:.0f}m", error=event.error)
                elif not event.up:
                    self.log.warning("consul unreachable; holding the current state", error=event.error)
                else:
                    self.log.info("consul reachable")
            elif isinstance(event, ReadRefused):
                # Consul answered: a refusal is not an outage (consul_up stays 1); it names the missing rule.
                self.metrics.consul_refused.set(0 if event.error is None else 1)
                if event.error is not None:
                    self.log.error("consul refuses to let this agent read the intent; holding the current state", error=event.error)
                else:
                    self.log.info("consul lets this agent read the intent again")
                self._refusal = "" if event.error is None else f"intent read refused: {event.error}"

    def take(self, state: State) -> Intake | None:
        """Absorb the newest read for a box in ``state``; None when there was nothing new."""
        with self._lock:
            event, self._pending = self._pending, None
            refusal, self._refusal = self._refusal, None
        if refusal is not None:
            if refusal:
                self.error = refusal
            elif self.error and self.error.startswith("intent read refused"):
                self.error = None
        if event is None:
            return Intake.READ_REFUSED if refusal is not None else None
        read = event.read
        if not read.exists:
            if state is State.ACTIVE:
                # Missing at start-up, or deleted before a scheduled window
                # began: active (and a scheduled entry is cancelled).
                return self._accept(Intent(mode=Mode.ACTIVE, index=0))
            return self._refuse("intent missing: the desired key was deleted; holding (write 'active' to leave maintenance)")
        if self.intent is not None and read.modify_index == self.intent.index:
            return Intake.READ_REFUSED if refusal is not None else None
        try:
            intent = parse_intent(read.value or b"", read.modify_index)
        except IntentError as exc:
            self.metrics.intent_errors.inc()
            return self._refuse(f"intent {read.modify_index} refused: {exc}")
        return self._accept(intent)

    def _accept(self, intent: Intent) -> Intake:
        if self.error:
            self.metrics.intent_error_active.set(0)
        self.error = None
        if self.intent != intent:
            self.log.info("intent accepted", intent_index=intent.index, mode=intent.mode.value, reason=intent.reason, by=intent.by)
        self.intent = intent
        self.metrics.desired.state(intent.mode.value)
        self.metrics.intent_index.set(intent.index)
        return Intake.ACCEPTED

    def _refuse(self, message: str) -> Intake:
        if message != self.error:
            self.log.error("intent refused; nothing changes", reason=message)
        self.error = message
        self.metrics.intent_error_active.set(1)
        return Intake.REFUSED
