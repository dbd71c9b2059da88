"""DecisionLoop: the reconciler's one thread — tick, sleep until news or ``resync``, stop between two actions.

Kept apart from the decisions so the rules of the thread are in one place:
it never sleeps past ``resync`` (capped at the watchdog interval, so a live
loop keeps feeding systemd's watchdog), a tick that raises is reported and
retried with backoff, and a stop starts no new action: ``between_calls`` is
what steps call between two blocking calls, and it raises
``ShutdownRequested`` once a stop was asked for.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from agent.core.backoff import Backoff
from agent.core.errors import ShutdownRequested


class DecisionLoop:
    def __init__(self, name: str, tick: Callable[[], float], on_tick: Callable[[], None], failed: Callable[[Exception], None],
                 succeeded: Callable[[], None], backoff: Backoff, resync: float, log: Any):
        self.tick = tick
        self.on_tick = on_tick
        self.failed = failed
        self.succeeded = succeeded
        self.backoff = backoff
        self.resync = resync
        self.log = log
        self.last_tick = time.monotonic()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._thread.start()

    def stop(self, grace: float) -> bool:
        """Start no new action; wait up to ``grace`` for the call in flight. False when it is abandoned.

        An abandoned call is ended by the process exit, exactly like a kill
        between two actions: the next start re-checks before acting.
        """
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=grace)
        if self._thread.is_alive():
            self.log.warning("abandoning the action in flight to stop in time", grace_seconds=grace)
            return False
        return True

    def between_calls(self) -> None:
        """Between two steps, and between two blocking calls of a step: feed the watchdog and ``/healthz`` alike (a long
        step that heartbeats is alive for both: Consul's check on ``/healthz`` holds the session); once stopping, start nothing new."""
        self.last_tick = time.monotonic()
        self.on_tick()
        if self._stop.is_set():
            raise ShutdownRequested("the agent is stopping: no new action starts")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.last_tick = time.monotonic()
            self.on_tick()
            try:
                wait = self.tick()
                self.succeeded()
            except ShutdownRequested:
                self.log.info("stopped between two actions")
                return
            except Exception as exc:  # noqa: BLE001 - the loop must survive any bug in a step
                self.failed(exc)
                wait = self.backoff.next()
            # Never sleep longer than ``resync`` (which the app caps at the
            # watchdog interval): a retry delay or a pending step's recheck may
            # be longer, and a sleeping loop that stops pinging the watchdog
            # would be restarted though it is alive. Waking early is harmless:
            # tick() is level-triggered.
            self._wake.wait(timeout=max(0.0, min(wait, self.resync)))
            self._wake.clear()
