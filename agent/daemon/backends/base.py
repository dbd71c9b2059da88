"""The one interface the worker and scheduler steps use to drive a service manager.

A name is what the config lists (a unit, a program, a group, a glob);
``expand`` turns those into the concrete names the other methods take. Every
call has a timeout; every failure raises ``BackendError`` whose ``detail``
names the exact command, unit or program and what it answered.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Sequence

from agent.core.errors import MaintenanceAgentError

OUTPUT_LIMIT = 1500
"""Characters of a command's output kept in an error (head and tail)."""


class RunState(enum.Enum):
    """Where a service is, including the two transitional states a boolean would hide.

    A service that is ``STOPPING`` is neither running (a restore must start it
    once it has stopped) nor stopped (entering must wait for it); a service
    that is ``STARTING`` is not yet observed running (a restore is not done).
    """

    RUNNING = "running"
    STARTING = "starting"
    STOPPING = "stopping"
    STOPPED = "stopped"

    @property
    def up_or_coming(self) -> bool:
        """Running, or on its way to run: what a snapshot records as "ran before"."""
        return self in (RunState.RUNNING, RunState.STARTING)


class BackendError(MaintenanceAgentError):
    """A service manager refused, failed, timed out or was unreachable."""

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


def truncate(text: str, limit: int = OUTPUT_LIMIT) -> str:
    """Keep the start and the end of long output: the command and the final error both matter."""
    text = text.strip()
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]} [...{len(text) - 2 * half} characters cut...] {text[-half:]}"


class ServiceBackend(abc.ABC):
    """Stop, start, hold and release services or jobs of one service manager."""

    #: Short name used in logs and errors ("systemd", "supervisor", "command").
    kind: str = ""

    @abc.abstractmethod
    def expand(self, names: Sequence[str]) -> list[str]:
        """Concrete names for the configured ones (globs and groups expanded), in config order.

        A plain name that the manager does not know raises ``BackendError``.
        """

    @abc.abstractmethod
    def run_state(self, name: str) -> RunState:
        """Where the service is now; a state the manager reports that none of these fit raises ``BackendError``."""

    @abc.abstractmethod
    def stop(self, name: str) -> None:
        """Stop the service and wait until it stopped; stopping a stopped one is fine."""

    @abc.abstractmethod
    def start(self, name: str) -> None:
        """Start the service; starting a running one is fine."""

    @abc.abstractmethod
    def can_hold(self, name: str) -> bool:
        """True when the manager can keep ``name`` from starting on its own (at boot, by a timer) while held.

        systemd and supervisor: a hold marker that the box's files honour (``backends.holds``);
        the command backend: its configured ``disable``/``enable`` commands. When False, ``is_held``
        is always False and ``hold``/``release`` do nothing.
        """

    @abc.abstractmethod
    def is_held(self, name: str) -> bool:
        """True when ``name`` is kept from starting on its own."""

    @abc.abstractmethod
    def hold(self, name: str) -> None:
        """Keep ``name`` from starting on its own until ``release`` (survives a reboot); raises when the hold would not hold."""

    @abc.abstractmethod
    def release(self, name: str) -> None:
        """Undo ``hold``."""

    @abc.abstractmethod
    def running_jobs(self, name: str) -> list[str]:
        """For a scheduled job: what it started that is still running (empty when idle)."""

    @abc.abstractmethod
    def stop_running_job(self, name: str) -> None:
        """Stop what ``running_jobs`` reported, after a drain timed out."""
