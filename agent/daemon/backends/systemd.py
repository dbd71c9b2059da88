"""Drive systemd units (services and timers) through ``systemctl``.

Stopping for a window is ``systemctl stop`` plus ``systemctl disable`` for
units that were enabled, so a reboot mid-window does not start them again;
leaving re-enables and starts exactly what the step remembered. A timer's
running job is the unit it triggers (``systemctl show -p Triggers``).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

from agent.daemon.backends.base import BackendError, RunState, ServiceBackend
from agent.daemon.backends.run import CommandResult, run_command

RUN_STATES = {
    "active": RunState.RUNNING, "reloading": RunState.RUNNING, "refreshing": RunState.RUNNING,
    "activating": RunState.STARTING,
    "deactivating": RunState.STOPPING,
    "inactive": RunState.STOPPED, "failed": RunState.STOPPED,
}
ENABLED_STATES = frozenset({"enabled", "enabled-runtime"})
NOT_ENABLED_STATES = frozenset({"disabled", "static", "masked", "masked-runtime", "indirect", "generated", "transient", "linked", "linked-runtime", "alias"})


def is_glob(name: str) -> bool:
    return any(ch in name for ch in "*?[")


class SystemdBackend(ServiceBackend):
    kind = "systemd"

    def __init__(self, systemctl: str = "systemctl", timeout: float = 60.0):
        self.systemctl = systemctl
        self.timeout = timeout

    def _run(self, *args: str) -> CommandResult:
        return run_command([self.systemctl, *args], timeout=self.timeout)

    def _run_ok(self, *args: str) -> CommandResult:
        result = self._run(*args)
        if result.returncode != 0:
            raise BackendError(result.failure())
        return result

    def expand(self, names: Sequence[str]) -> list[str]:
        units: list[str] = []
        for name in names:
            found = self._matching_units(name)
            if not found and not is_glob(name):
                raise BackendError(f"unit {name} does not exist (neither `systemctl list-units --all` nor `list-unit-files` know it)")
            units.extend(u for u in found if u not in units)
        return units

    def _matching_units(self, pattern: str) -> list[str]:
        loaded = self._run_ok("list-units", "--all", "--plain", "--no-legend", pattern)
        files = self._run_ok("list-unit-files", "--plain", "--no-legend", pattern)
        found: list[str] = []
        for line in (loaded.stdout + "\n" + files.stdout).splitlines():
            unit = line.split(maxsplit=1)[0] if line.strip() else ""
            # Templates (foo@.service) cannot run themselves; their instances are listed on their own.
            if unit and "@." not in unit and fnmatch.fnmatchcase(unit, pattern) and unit not in found:
                found.append(unit)
        return sorted(found)

    def run_state(self, name: str) -> RunState:
        result = self._run("is-active", name)
        state = RUN_STATES.get(result.stdout.strip())
        if state is None:
            raise BackendError(result.failure(f"unexpected state of {name}"))
        return state

    def stop(self, name: str) -> None:
        self._run_ok("stop", name)

    def start(self, name: str) -> None:
        self._run_ok("start", name)

    def tracks_enablement(self, name: str) -> bool:
        return True

    def is_enabled(self, name: str) -> bool:
        result = self._run("is-enabled", name)
        state = result.stdout.strip()
        if state in ENABLED_STATES:
            return True
        if state in NOT_ENABLED_STATES:
            return False
        raise BackendError(result.failure(f"cannot tell whether {name} is enabled"))

    def disable(self, name: str) -> None:
        self._run_ok("disable", name)

    def enable(self, name: str) -> None:
        self._run_ok("enable", name)

    def running_jobs(self, name: str) -> list[str]:
        if not name.endswith(".timer"):
            return []
        return [unit for unit in self._triggered_units(name) if self.run_state(unit) is not RunState.STOPPED]

    def stop_running_job(self, name: str) -> None:
        for unit in self.running_jobs(name):
            self.stop(unit)

    def _triggered_units(self, timer: str) -> list[str]:
        result = self._run_ok("show", "--property=Triggers", "--value", timer)
        return result.stdout.split()
