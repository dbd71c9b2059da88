"""The hold contract between the agent and the box's files: marker paths and the drop-ins that honour them.

The agent holds a unit for a window by writing a marker file; the unit's
drop-in, written once by ``maintenance-agent install-files`` as root, keeps it
from starting while the marker exists (``docs/holds.md``). Both sides name
the same paths through these functions, so they cannot drift apart.

A configured unit is held by a drop-in of its own (``foo.service.d``) or of
its template (``ledger@.service.d``, which every instance reads). So a
systemd glob must be a template's instances, ``TEMPLATE@*.TYPE``: the
template's unit file bounds what any instance can run, where a prefix glob
(``billpay-*``) would let the agent's user start whatever a name of that shape
turns out to be (on systemd 257 and later even a transient unit it creates
itself). An instance name is plain words joined by single dots or dashes, so
no instance can smuggle a path into the template's command line (``%I``
turns ``-`` and ``\\x2f`` into ``/``). The units the box itself depends on
(D-Bus, polkit, systemd's own, login and rescue shells, SSH, this agent) are
never accepted.
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
#: What a worker's services and a scheduler's jobs may be: services and timers (never a target, socket or mount).
UNIT_TYPES = ("service", "timer")
_TYPE = "(?P<type>" + "|".join(UNIT_TYPES) + ")"
_UNIT_NAME = re.compile(r"[A-Za-z0-9:_.\\@-]+\." + _TYPE)
_TEMPLATE_GLOB = re.compile(r"(?P<template>[A-Za-z0-9:_.-]*[A-Za-z0-9:_]@)\*\." + _TYPE)
#: An instance name the rule and the agent accept: words of letters, digits, ``_`` and ``:``, joined by one ``.`` or ``-``.
INSTANCE = r"[A-Za-z0-9_:]+(?:[.-][A-Za-z0-9_:]+)*"
_ESCAPE = frozenset("\\^$.|?*+()[]{}/")
_SYSTEMD_OWN = r"systemd-[A-Za-z0-9:_.\\-]*"
#: Units a box depends on: the agent's user may never stop nor start them, whatever the config says.
CRITICAL_UNITS = re.compile(
    rf"(maintenance-agent|dbus|dbus-broker|polkit|debug-shell|emergency|rescue|console-getty|ssh|sshd|{_SYSTEMD_OWN})\.service"
    rf"|(getty|serial-getty|container-getty|autovt|user|user-runtime-dir|ssh|sshd|{_SYSTEMD_OWN})@[^/]*\.service"
    rf"|{_SYSTEMD_OWN}\.timer")


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
    """Why ``name`` (a unit or a glob in ``services``/``jobs``) may not be configured, or None."""
    if is_glob(name):
        found = _TEMPLATE_GLOB.fullmatch(name)
        if found is None:
            return (f"{name!r}: a systemd glob must be a template's instances, 'TEMPLATE@*.service' or 'TEMPLATE@*.timer' "
                    f"(e.g. 'ledger@*.service'): a template's unit file bounds what the agent may start, a prefix or type "
                    f"glob does not; name other units one by one")
        example = found.group("template") + "x." + found.group("type")
    else:
        if not _UNIT_NAME.fullmatch(name):
            return f"{name!r}: expected a unit name with its type (a service or a timer), e.g. 'billing-worker.service' or 'export.timer'"
        example = name
    if CRITICAL_UNITS.fullmatch(example):
        return f"{name!r}: the box itself depends on this unit (D-Bus, polkit, systemd, a login shell, SSH or this agent); the agent may never stop it"
    return None


def systemd_drop_in_dir(name: str) -> str:
    """The drop-in directory that covers ``name``: ``foo.service.d``, or ``foo@.service.d`` for a template's instances."""
    if not is_glob(name):
        return f"{name}.d"
    found = _TEMPLATE_GLOB.fullmatch(name)
    if found is None:
        raise ValueError(systemd_name_problem(name))
    return f"{found.group('template')}.{found.group('type')}.d"


def unit_pattern(name: str) -> str:
    """The units ``name`` stands for, as a regular expression valid both in Python and in polkit's JavaScript (no anchors).

    An exact name stands for itself; ``TEMPLATE@*.TYPE`` for the template's instances whose name is :data:`INSTANCE`."""
    if not is_glob(name):
        return _escape(name)
    found = _TEMPLATE_GLOB.fullmatch(name)
    if found is None:
        raise ValueError(systemd_name_problem(name))
    return _escape(found.group("template")) + f"(?:{INSTANCE})" + _escape("." + found.group("type"))


def matches(name: str, unit: str) -> bool:
    """Whether ``unit`` is one of the units ``name`` (a configured unit or template glob) stands for."""
    return re.fullmatch(unit_pattern(name), unit) is not None


def _escape(text: str) -> str:
    return "".join("\\" + ch if ch in _ESCAPE else ch for ch in text)
