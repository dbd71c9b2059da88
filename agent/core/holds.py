"""The hold contract between the agent and the box's files: marker paths and the drop-ins that honour them.

The agent holds a unit for a window by writing a marker file; the unit's
drop-in, written once by ``maintenance-agent install-files`` as root, keeps it
from starting while the marker exists (``docs/holds.md``). Both sides name
the same paths through these functions, so they cannot drift apart.

A systemd drop-in directory names one unit, one template's instances
(``ledger@.service.d``), every unit whose name starts with a dash-ended
prefix (``billpay-.service.d``) or every unit of a type (``timer.d``). So a
configured glob must be one of those shapes to be held exactly; any other
glob is refused by the config check.
"""

from __future__ import annotations

import re
from pathlib import PurePath, PurePosixPath
from typing import TypeVar

P = TypeVar("P", bound=PurePath)

#: The file name of the hold drop-in on every configured systemd unit.
SYSTEMD_HOLD_DROP_IN = "maintenance-agent-hold.conf"
#: What supervisor.service's start hook (``maintenance-agent supervisor-holds``) writes and supervisord includes.
SUPERVISOR_HOLDS_FILE = PurePosixPath("/run/maintenance-agent-supervisor/holds.conf")
UNIT_TYPES = ("service", "timer", "socket", "path", "target", "mount")
_UNIT_NAME = re.compile(r"^[A-Za-z0-9:_.\\@-]+\.(" + "|".join(UNIT_TYPES) + r")$")
_JS_SPECIAL = frozenset("\\^$.|+(){}/")
_HOLDABLE_GLOB = re.compile(r"^(?P<prefix>(?:[A-Za-z0-9:_.\\-]*[-@])?)\*\.(?P<type>" + "|".join(UNIT_TYPES) + r")$")


def systemd_markers(holds_dir: P) -> P:
    return holds_dir / "systemd"


def supervisor_markers(holds_dir: P) -> P:
    return holds_dir / "supervisor"


def systemd_hold_condition(holds_dir: PurePath) -> str:
    """The drop-in's one line: the unit starts only while no marker names it (``%n``: the unit's full name)."""
    return f"ConditionPathExists=!{systemd_markers(holds_dir)}/%n"


def is_glob(name: str) -> bool:
    return any(ch in name for ch in "*?[")


def systemd_name_problem(name: str) -> str | None:
    """Why ``name`` (a unit or a glob in ``services``/``jobs``) cannot be held exactly by a drop-in, or None."""
    if is_glob(name):
        if _HOLDABLE_GLOB.match(name):
            return None
        return (f"{name!r}: a systemd glob must be 'PREFIX-*.TYPE', 'TEMPLATE@*.TYPE' or '*.TYPE' (the shapes a systemd "
                f"drop-in directory can cover exactly, so the window's hold reaches every unit it matches), e.g. 'billpay-*.service'")
    if not _UNIT_NAME.match(name):
        return f"{name!r}: expected a unit name with its type, e.g. 'billing-worker.service' or 'export.timer'"
    return None


def systemd_drop_in_dir(name: str) -> str:
    """The drop-in directory that covers ``name``: ``foo.service.d``, ``foo@.service.d``, ``foo-.service.d`` or ``service.d``."""
    if not is_glob(name):
        return f"{name}.d"
    found = _HOLDABLE_GLOB.match(name)
    if found is None:
        raise ValueError(systemd_name_problem(name))
    prefix, unit_type = found.group("prefix"), found.group("type")
    return f"{prefix}.{unit_type}.d" if prefix else f"{unit_type}.d"


def glob_to_js_regex(pattern: str) -> str:
    """A glob over unit names as an anchored JavaScript regular expression (for the polkit rule)."""
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "[" and "]" in pattern[i + 1:]:
            end = pattern.index("]", i + 1)
            body = pattern[i + 1:end]
            negated = body.startswith("!")
            body = body[1:] if negated else body
            out.append("[" + ("^" if negated else "") + body.replace("\\", "\\\\").replace("]", "\\]") + "]")
            i = end
        else:
            out.append("\\" + ch if ch in _JS_SPECIAL else ch)
        i += 1
    return "^" + "".join(out) + "$"
