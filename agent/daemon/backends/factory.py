"""Pick the backend a role's config table asks for, and configure it from that table."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from agent.core.holds import SUPERVISOR_HOLDS_FILE

if TYPE_CHECKING:
    from agent.config.roles import SchedulerSection, WorkerSection
    from agent.daemon.backends.base import ServiceBackend


def build_backend(section: WorkerSection | SchedulerSection, holds_dir: Path) -> ServiceBackend:
    """``holds_dir``: ``<state_dir>/holds``, where the systemd and supervisor backends keep their hold markers.

    Only the chosen backend's module is imported."""
    if section.backend == "systemd":
        from agent.daemon.backends.systemd import SystemdBackend

        return SystemdBackend(holds_dir, systemctl=section.systemctl, timeout=section.timeout_seconds)
    if section.backend == "supervisor":
        from agent.daemon.backends.supervisor import SupervisorBackend

        conn = section.supervisor
        return SupervisorBackend(conn.url, holds_dir, username=conn.username, password=conn.password, timeout=section.timeout_seconds,
                                 hook_output=Path(SUPERVISOR_HOLDS_FILE) if conn.holds_check else None)
    from agent.daemon.backends.command import CommandBackend

    return CommandBackend(section.commands, timeout=section.timeout_seconds, inactive_exit_codes=section.inactive_exit_codes)
