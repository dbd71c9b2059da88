"""Drive systemd units (services and timers) through ``systemctl``, as an unprivileged user.

The agent only ever starts and stops units (polkit's ``manage-units``, which
names the unit and the verb, so the box's rule allows exactly the configured
units). A window's hold is a marker file that the unit's drop-in
(``ConditionPathExists=!…/%n``, written by ``install-files``) honours; the
agent never enables, disables or masks anything (``backends.holds``). Before a
unit is held, its drop-in is checked to be loaded and to name this agent's
marker directory: a hold that would not survive a reboot is refused, not
trusted. A timer's running job is the unit it triggers (``show -p Triggers``).

A call polkit refuses is reported as such, naming the action, the verb and the
unit: ``systemctl`` says so only in words ("Access denied", "Interactive
authentication required"), so that is what is read.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from agent.core.holds import SYSTEMD_HOLD_DROP_IN, is_glob, matches, systemd_hold_condition, systemd_markers
from agent.daemon.backends.base import BackendError, RunState, ServiceBackend
from agent.daemon.backends.holds import HoldMarkers
from agent.daemon.backends.run import CommandResult, run_command

RUN_STATES = {
    "active": RunState.RUNNING, "reloading": RunState.RUNNING, "refreshing": RunState.RUNNING,
    "activating": RunState.STARTING,
    "deactivating": RunState.STOPPING,
    "inactive": RunState.STOPPED, "failed": RunState.STOPPED,
}
POLKIT_REFUSALS = ("Access denied", "Interactive authentication required")


class SystemdBackend(ServiceBackend):
    kind = "systemd"

    def __init__(self, holds_dir: Path, systemctl: str = "systemctl", timeout: float = 60.0):
        """``holds_dir``: ``<state_dir>/holds``, the directory the units' hold drop-ins name."""
        self.holds_dir = holds_dir
        self.markers = HoldMarkers(systemd_markers(holds_dir))
        self.systemctl = systemctl
        self.timeout = timeout

    def _run(self, *args: str) -> CommandResult:
        return run_command([self.systemctl, "--no-ask-password", *args], timeout=self.timeout)

    def _run_ok(self, *args: str) -> CommandResult:
        result = self._run(*args)
        if result.returncode != 0:
            refused = next((words for words in POLKIT_REFUSALS if words in result.stderr), None)
            if refused and args[0] in ("start", "stop"):
                raise BackendError(
                    f"polkit refused org.freedesktop.systemd1.manage-units, verb {args[0]}, unit {args[-1]}, to this agent's user "
                    f"(systemctl: {refused}): the rule `maintenance-agent install-files` writes allows exactly the configured "
                    f"units; is {args[-1]} in the config, and were the files installed from this config? {result.failure()}")
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
            # Templates (foo@.service) cannot run themselves; an instance whose name the polkit rule would refuse
            # (agent.core.holds.INSTANCE) is not the config's either.
            if unit and "@." not in unit and matches(pattern, unit) and unit not in found:
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

    def can_hold(self, name: str) -> bool:
        return True

    def is_held(self, name: str) -> bool:
        return self.markers.is_held(name)

    def hold(self, name: str) -> None:
        if not self.markers.is_held(name):
            self._check_hold_drop_in(name)
        self.markers.hold(name)

    def release(self, name: str) -> None:
        self.markers.release(name)

    def _check_hold_drop_in(self, name: str) -> None:
        """Refuse a hold systemd would not honour: the unit's drop-in must be loaded and name this marker directory."""
        paths = self._run_ok("show", "--property=DropInPaths", "--value", name).stdout.split()
        drop_in = next((Path(p) for p in paths if Path(p).name == SYSTEMD_HOLD_DROP_IN), None)
        fix = "run `maintenance-agent install-files` as root with this config, then `systemctl daemon-reload`"
        if drop_in is None:
            raise BackendError(f"cannot hold {name}: systemd has no {SYSTEMD_HOLD_DROP_IN} drop-in loaded for it, so it would "
                               f"start again at boot mid-window: {fix}")
        condition = systemd_hold_condition(self.holds_dir)
        try:
            lines = [line.strip() for line in drop_in.read_text().splitlines()]
        except OSError as exc:
            raise BackendError(f"cannot hold {name}: cannot read its drop-in {drop_in}: {exc.strerror or exc}") from None
        if condition not in lines:
            raise BackendError(f"cannot hold {name}: its drop-in {drop_in} does not say `{condition}` (installed for another "
                               f"state_dir?): {fix}")

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
