"""Hold markers: one file per held unit or program, which the box's own files honour at every start.

Why files and not ``systemctl disable``: the agent runs as an unprivileged
user, and polkit can limit ``manage-units`` (start, stop) to a unit but not
``manage-unit-files`` (enable, disable, mask), which carries no unit name:
allowing it would let the agent's user enable a root shell or mask polkit.
So the agent never changes unit files. ``maintenance-agent install-files``
(run as root when the box is installed) gives every configured unit a
drop-in ``ConditionPathExists=!<holds>/systemd/%n`` and supervisord a
start hook that turns ``autostart`` off for the held programs; the agent only
writes and removes markers in its own state directory. A held unit therefore
does not start at boot, before or after the agent starts, nor by a timer,
until the window ends and the agent removes its marker.

A marker is written atomically and its directory fsynced before the agent
stops anything, and removed (directory fsynced) before it starts anything,
so a power cut at any point leaves either a held, stopped unit or a released
one. ``docs/holds.md`` says why this is safe and what an operator sees;
``agent.core.holds`` names the paths both sides use.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from agent.clients.files import atomic_write
from agent.daemon.backends.base import BackendError


class HoldMarkers:
    """The markers of one service manager (``<state_dir>/holds/<kind>/<name>``)."""

    def __init__(self, directory: Path):
        self.directory = directory

    def path(self, name: str) -> Path:
        if not name or name in (".", "..") or "/" in name or "\0" in name or name.startswith("."):
            raise BackendError(f"cannot hold {name!r}: not a unit or program name")
        return self.directory / name

    def is_held(self, name: str) -> bool:
        return self.path(name).exists()

    def held(self) -> list[str]:
        try:
            return sorted(p.name for p in self.directory.iterdir() if not p.name.startswith("."))
        except FileNotFoundError:
            return []

    def hold(self, name: str) -> None:
        marker = self.path(name)
        if marker.exists():
            return
        note = {"held_by": "maintenance-agent", "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "release": "the agent removes this file when the maintenance window ends"}
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            atomic_write(marker, (json.dumps(note) + "\n").encode(), mode=0o644)
        except OSError as exc:
            raise BackendError(f"cannot write hold marker {marker}: {exc.strerror or exc}") from None

    def release(self, name: str) -> None:
        marker = self.path(name)
        try:
            marker.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise BackendError(f"cannot remove hold marker {marker}: {exc.strerror or exc}") from None
        _fsync_dir(self.directory)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
