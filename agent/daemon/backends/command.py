"""Drive anything else (Windows services, containers) with configured shell commands.

Each service has its own ``stop`` / ``start`` / ``status`` commands (and
optionally ``is_enabled`` / ``disable`` / ``enable`` and, for jobs,
``running`` / ``stop_running``). A window's hold is ``disable``, its release
``enable``; a service that was disabled before the window stays so (the step
remembers). A command that fails raises ``BackendError``
with the exact command line, exit code and output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from agent.daemon.backends.base import BackendError, RunState, ServiceBackend
from agent.daemon.backends.run import CommandResult, run_command

if TYPE_CHECKING:
    from agent.config.roles import ServiceCommands


class CommandBackend(ServiceBackend):
    kind = "command"

    def __init__(self, commands: Mapping[str, ServiceCommands], timeout: float = 60.0, inactive_exit_codes: Sequence[int] = (1, 2, 3)):
        self.commands = dict(commands)
        self.timeout = timeout
        self.inactive_exit_codes = frozenset(inactive_exit_codes)

    def _table(self, name: str) -> ServiceCommands:
        try:
            return self.commands[name]
        except KeyError:
            raise BackendError(f"no commands are configured for {name}") from None

    def _run_ok(self, name: str, action: str, command: str) -> CommandResult:
        result = run_command(command, timeout=self.timeout)
        if result.returncode != 0:
            raise BackendError(result.failure(f"{action} {name}"))
        return result

    def _yes_no(self, name: str, question: str, command: str) -> bool:
        result = run_command(command, timeout=self.timeout)
        if result.returncode == 0:
            return True
        if result.returncode in self.inactive_exit_codes:
            return False
        raise BackendError(result.failure(f"{question} of {name}"))

    def expand(self, names: Sequence[str]) -> list[str]:
        for name in names:
            self._table(name)
        return list(names)

    def run_state(self, name: str) -> RunState:
        """A status command answers running (0) or stopped (an inactive exit code): its stop command must wait until stopped."""
        return RunState.RUNNING if self._yes_no(name, "status", self._table(name).status) else RunState.STOPPED

    def stop(self, name: str) -> None:
        self._run_ok(name, "stop", self._table(name).stop)

    def start(self, name: str) -> None:
        self._run_ok(name, "start", self._table(name).start)

    def can_hold(self, name: str) -> bool:
        return self._table(name).is_enabled is not None

    def is_held(self, name: str) -> bool:
        """Held is "not enabled": whatever the service manager behind the commands calls it (a Windows service's start type)."""
        command = self._table(name).is_enabled
        return command is not None and not self._yes_no(name, "is_enabled", command)

    def hold(self, name: str) -> None:
        command = self._table(name).disable
        if command is not None:
            self._run_ok(name, "disable", command)

    def release(self, name: str) -> None:
        command = self._table(name).enable
        if command is not None:
            self._run_ok(name, "enable", command)

    def running_jobs(self, name: str) -> list[str]:
        command = self._table(name).running
        if command is None:
            return []
        return [name] if self._yes_no(name, "running", command) else []

    def stop_running_job(self, name: str) -> None:
        command = self._table(name).stop_running
        if command is None:
            raise BackendError(f"no stop_running command is configured for {name}")
        self._run_ok(name, "stop_running", command)
