"""``maintenance-agent supervisor-holds``: run by supervisor.service before supervisord, as root.

supervisor has no "disabled" state: an ``autostart=true`` program starts
whenever supervisord does, so a power cut mid-window would start every worker
again. The agent holds a program with a marker named ``group:process``
(``agent.core.holds``); this hook, installed by ``install-files`` as an
``ExecStartPre=`` of supervisor.service, turns those markers into an include
file that sets ``autostart=false`` for exactly the held programs. supervisord
reads every included file into one parser, a later section's key overriding
an earlier one, so the program keeps the rest of its definition.

It runs as root on every box start, so it stays small and trusts nothing the
agent's user wrote: a marker that names no program of supervisor's own
configuration is ignored (and said), and the output names programs only.
"""

from __future__ import annotations

import configparser
import glob
import re
from dataclasses import dataclass, field
from pathlib import Path

from agent.clients.files import atomic_write

_SAFE_NAME = re.compile(r"[A-Za-z0-9_.\-]+")


@dataclass
class SupervisorPrograms:
    """The program and group sections of supervisor's configuration, includes resolved."""

    programs: set[str] = field(default_factory=set)
    groups: dict[str, list[str]] = field(default_factory=dict)


def read_programs(main_conf: Path) -> SupervisorPrograms:
    """The ``[program:x]`` and ``[group:g]`` sections of ``main_conf`` and the files its ``[include]`` names."""
    # supervisor, like this parser with inline_comment_prefixes, takes " ;" after a value as a comment.
    parser = configparser.RawConfigParser(strict=False, interpolation=None, inline_comment_prefixes=(";",))
    parser.read(main_conf)
    if parser.has_option("include", "files"):
        here = main_conf.parent
        for pattern in parser.get("include", "files").split():
            pattern = pattern.replace("%(here)s", str(here))
            full = pattern if Path(pattern).is_absolute() else str(here / pattern)
            for name in sorted(glob.glob(full)):
                parser.read(name)
    found = SupervisorPrograms()
    for section in parser.sections():
        kind, _, name = section.partition(":")
        if kind == "program" and name:
            found.programs.add(name)
        elif kind == "group" and name:
            found.groups[name] = [p.strip() for p in parser.get(section, "programs", fallback="").split(",") if p.strip()]
    return found


def program_of(marker: str, known: SupervisorPrograms) -> str | None:
    """The program section a ``group:process`` marker holds, or None when supervisor has no such program."""
    group, _, process = marker.partition(":")
    members = known.groups.get(group)
    if members is not None:
        # A heterogeneous group: the process is one of its programs (``name`` or ``name_00`` with numprocs).
        candidates = [p for p in members if process == p or process.startswith(p + "_")]
        return max(candidates, key=len) if candidates else None
    return group if group in known.programs else None


def render(held: list[str]) -> str:
    lines = ["; Written by `maintenance-agent supervisor-holds` when supervisor.service started: do not edit.",
             "; Held by maintenance-agent for a maintenance window, these programs do not start with supervisord;",
             "; the agent starts what ran before when the window ends (docs/holds.md)."]
    for program in held:
        lines += ["", f"[program:{program}]", "autostart=false"]
    return "\n".join(lines) + "\n"


def write_holds(markers_dir: Path, main_conf: Path, output: Path) -> tuple[list[str], list[str]]:
    """Write ``output`` for the markers in ``markers_dir``; the programs held, and the markers ignored."""
    # A symlink in the agent's state directory would make root list another directory: not read (and said).
    if markers_dir.is_symlink():
        markers, ignored = [], [f"{markers_dir} (a symbolic link, not read)"]
    else:
        markers, ignored = (sorted(p.name for p in markers_dir.iterdir()) if markers_dir.is_dir() else []), []
    known = read_programs(main_conf)
    held: list[str] = []
    for marker in markers:
        program = program_of(marker, known)
        if program is None or not _SAFE_NAME.fullmatch(program):
            ignored.append(marker)
        elif program not in held:
            held.append(program)
    output.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    atomic_write(output, render(sorted(held)).encode(), mode=0o644)
    return sorted(held), ignored
