"""Every file a box needs besides the package and its config, made from the config, and writing them under a root.

What each file is for, by role:

- all: the agent's unit, its sysusers line;
- worker/scheduler with systemd: the polkit rule for exactly the configured
  units, and on each configured unit (or template, or dash prefix) the hold
  drop-in (``agent.core.holds``);
- worker/scheduler with supervisor: supervisord's socket for the agent's group,
  and supervisor.service's start hook that keeps held programs from starting;
- edge: the map file HAProxy reads at start, in its state "off", only when it
  does not exist yet (it is the live state afterwards); a drop-in that lets the
  agent write it when it lives outside the state directory.

Writing is idempotent: a file already right is left alone, one that differs is
replaced atomically, and a file a previous run wrote that the config no longer
needs (a unit dropped from ``services``) is removed. The manifest of what was
written is ``/etc/maintenance-agent/installed-files``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from agent.clients.files import atomic_write
from agent.clients.haproxy import render_map_file
from agent.config.schema import AgentConfig
from agent.core.holds import SUPERVISOR_HOLDS_FILE, SYSTEMD_HOLD_DROP_IN, supervisor_markers, systemd_drop_in_dir, systemd_hold_condition
from agent.install.polkit import allowed_units, render_rule
from agent.install.unit import SYSUSERS, USER, agent_unit

SYSTEMD_DIR = PurePosixPath("/etc/systemd/system")
MANIFEST = PurePosixPath("/etc/maintenance-agent/installed-files")
POLKIT_RULE = PurePosixPath("/etc/polkit-1/rules.d/50-maintenance-agent.rules")
INITIAL_MAP_HEADER = "Written by maintenance-agent install-files, maintenance off; the agent rewrites it (and changes HAProxy live)."


@dataclass(frozen=True)
class BoxFile:
    """One file at its path on the box: text, or a symlink (``link_to``); ``only_if_missing`` for live state."""

    path: PurePosixPath
    text: str = ""
    mode: int = 0o644
    link_to: str | None = None
    only_if_missing: bool = False


@dataclass(frozen=True)
class Layout:
    """Where things are on the box, beyond the config: the package's executable and supervisor's files."""

    config: PurePosixPath
    executable: PurePosixPath
    supervisor_conf: PurePosixPath = PurePosixPath("/etc/supervisor/supervisord.conf")
    supervisor_include_dir: PurePosixPath = PurePosixPath("/etc/supervisor/conf.d")


def box_files(config: AgentConfig, layout: Layout) -> list[BoxFile]:
    for private in ("/tmp", "/var/tmp"):
        if PurePosixPath(config.agent.state_dir).is_relative_to(private):
            raise ValueError(f"agent.state_dir {config.agent.state_dir} is under {private}, which the agent's unit makes private "
                             f"(PrivateTmp=yes): systemd would not see its hold markers; use /var/lib/maintenance-agent")
    files = [BoxFile(SYSTEMD_DIR / "maintenance-agent.service", agent_unit(layout.executable, layout.config)),
             BoxFile(PurePosixPath("/etc/sysusers.d/maintenance-agent.conf"), SYSUSERS)]
    allowed = allowed_units(config)
    if allowed:
        files.append(BoxFile(POLKIT_RULE, render_rule(allowed, str(layout.config))))
    files += _systemd_holds(config)
    files += _supervisor_files(config, layout)
    files += _edge_files(config)
    return files


def _systemd_holds(config: AgentConfig) -> list[BoxFile]:
    names = [*(config.worker.services if config.worker and config.worker.backend == "systemd" else []),
             *(config.scheduler.jobs if config.scheduler and config.scheduler.backend == "systemd" else [])]
    holds = PurePosixPath(config.agent.holds_dir)
    text = (f"# Written by `maintenance-agent install-files`. While the agent holds a unit for a maintenance window,\n"
            f"# its marker {holds}/systemd/<unit> exists and the unit does not start: not at boot, not by a timer,\n"
            "# not by hand (`systemctl status` says the start condition was unmet). The agent removes the marker\n"
            "# when the window ends, then starts what ran before (docs/holds.md).\n"
            f"[Unit]\n{systemd_hold_condition(holds)}\n")
    dirs = dict.fromkeys(systemd_drop_in_dir(name) for name in names)
    return [BoxFile(SYSTEMD_DIR / folder / SYSTEMD_HOLD_DROP_IN, text) for folder in dirs]


def _supervisor_files(config: AgentConfig, layout: Layout) -> list[BoxFile]:
    tables = [t for t in (config.worker, config.scheduler) if t is not None and t.backend == "supervisor"]
    if not tables:
        return []
    markers = supervisor_markers(PurePosixPath(config.agent.holds_dir))
    hook = (f"{layout.executable} supervisor-holds --markers {markers} --supervisor-config {layout.supervisor_conf} "
            f"--output {SUPERVISOR_HOLDS_FILE}")
    files = [
        BoxFile(SYSTEMD_DIR / "supervisor.service.d" / "maintenance-agent-holds.conf",
                "# Written by `maintenance-agent install-files`: before supervisord starts, programs the agent holds for a\n"
                "# maintenance window get autostart=false, so a reboot mid-window starts none of them (docs/holds.md).\n"
                f"[Service]\nExecStartPre={hook}\n"),
        BoxFile(layout.supervisor_include_dir / "zz-maintenance-agent-holds.conf", link_to=str(SUPERVISOR_HOLDS_FILE)),
    ]
    if any(t.supervisor.url.startswith("unix://") for t in tables):
        files.append(BoxFile(layout.supervisor_include_dir / "maintenance-agent.conf",
                             "; Written by `maintenance-agent install-files`: the agent's group may use supervisord's socket.\n"
                             f"[unix_http_server]\nchown=root:{USER}\nchmod=0770\n"))
    return files


def _edge_files(config: AgentConfig) -> list[BoxFile]:
    if config.edge is None:
        return []
    map_file = PurePosixPath(config.edge.map_file)
    files = [BoxFile(map_file, initial_map_text(), mode=0o640, only_if_missing=True)]
    if not map_file.is_relative_to(PurePosixPath(config.agent.state_dir)):
        files.append(BoxFile(SYSTEMD_DIR / "maintenance-agent.service.d" / "edge-map.conf",
                             "# Written by `maintenance-agent install-files`: the map file lives outside the state directory.\n"
                             f"[Service]\nReadWritePaths={map_file.parent}\n"))
    return files


def initial_map_text() -> str:
    """The edge's map before the agent ever ran: maintenance off, so HAProxy can start."""
    return render_map_file({"state": "off"}, INITIAL_MAP_HEADER).decode()


def install(files: list[BoxFile], root: Path) -> list[str]:
    """Write ``files`` under ``root``; one line per file said (written, unchanged, kept, removed)."""
    report = []
    for box_file in files:
        target = root / str(box_file.path).lstrip("/")
        _refuse_foreign_links(root, target)
        report.append(f"{_write(box_file, target)} {box_file.path}")
    manifest = root / str(MANIFEST).lstrip("/")
    wanted = {str(f.path) for f in files if not f.only_if_missing}
    previous = manifest.read_text().split() if manifest.exists() else []
    for stale in sorted(set(previous) - wanted):
        target = root / stale.lstrip("/")
        if target.is_symlink() or target.exists():
            target.unlink()
            report.append(f"removed {stale} (no longer in the config)")
    atomic_write(manifest, ("\n".join(sorted(wanted)) + "\n").encode(), mode=0o644)
    return report


def _refuse_foreign_links(root: Path, target: Path) -> None:
    """Never write through a symbolic link someone else owns: run as root, the agent's user owns its state directory."""
    path = root
    for part in target.relative_to(root).parts:
        path = path / part
        if path.is_symlink() and path.lstat().st_uid not in (0, os.geteuid()):
            raise ValueError(f"refusing to write {target}: {path} is a symbolic link owned by uid {path.lstat().st_uid}, "
                             f"neither root nor this user")


def _write(box_file: BoxFile, target: Path) -> str:
    if box_file.link_to is not None:
        if target.is_symlink() and os.readlink(target) == box_file.link_to:
            return "unchanged"
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.exists():
            target.unlink()
        target.symlink_to(box_file.link_to)
        return "linked"
    if target.exists():
        if box_file.only_if_missing:
            return "kept (live state)"
        if target.read_text() == box_file.text and (target.stat().st_mode & 0o777) == box_file.mode:
            return "unchanged"
    atomic_write(target, box_file.text.encode(), mode=box_file.mode)
    return "wrote"
