"""The box's local memory: a small JSON file in ``state_dir``, written atomically.

It keeps what must survive an agent restart: the machine state and intent
index the box acted on, the Consul session it held, and each step's notes
(for example which services ran before maintenance, so leaving restores
exactly those). Writes go to a temp file, fsync, rename, fsync the directory,
so a crash leaves either the old or the new file, never half of one.

A file that cannot be read, is not JSON, or is JSON of the wrong shape may
have held the list of services to restart: it is never forgotten nor
overwritten. ``problem`` says what is wrong; while it is set nothing is
written to disk and the reconciler holds the box as it is, until an operator
runs ``maintenance-agent confirm-state-reset`` (see docs/reliability.md).
"""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.clients.files import atomic_write
from agent.core.errors import MaintenanceAgentError
from agent.core.model import State

STATES = frozenset(s.value for s in State if s is not State.UNKNOWN)  # what the machine saves


class StateFileUnwritable(MaintenanceAgentError):
    """The state file could not be written (read-only or full ``state_dir``): the box cannot make progress safely."""


def shape_problem(doc: Any) -> str | None:
    """What is wrong with a parsed state document, or None when it has the shape this agent writes."""
    if not isinstance(doc, dict):
        return f"the top level is {type(doc).__name__}, not an object"
    for section, value in doc.items():
        if section == "machine":
            problem = _machine_problem(value)
        elif section == "session":
            problem = None if isinstance(value, str) else "session is not a string"
        elif section.startswith("step:"):
            problem = _notes_problem(value)
        else:
            problem = "it is not a section this agent writes"
        if problem:
            return f"section {section!r}: {problem}"
    return None


def _machine_problem(machine: Any) -> str | None:
    if not isinstance(machine, dict):
        return "not an object"
    if machine.get("state", State.ACTIVE.value) not in STATES:
        return f"unknown state {machine.get('state')!r} (expected one of {', '.join(sorted(STATES))})"
    index = machine.get("intent_index", 0)
    if not isinstance(index, int) or isinstance(index, bool):
        return "intent_index is not an integer"
    progress = machine.get("progress", {})
    if not isinstance(progress, dict) or any(not isinstance(k, str) or v not in STATES for k, v in progress.items()):
        return "progress is not an object of role → state"
    since = machine.get("since")
    if since is not None:
        try:
            datetime.fromisoformat(since)
        except (TypeError, ValueError):
            return f"since {since!r} is not an ISO 8601 time"
    return None


def _notes_problem(notes: Any) -> str | None:
    if not isinstance(notes, dict):
        return "not an object"
    snapshot = notes.get("snapshot")
    if snapshot is None:
        return None
    if not isinstance(snapshot, list):
        return "snapshot is not a list"
    for record in snapshot:
        if isinstance(record, dict) and "enabled" in record and "held" not in record:
            return (f"snapshot record {record!r} was written by an agent that disabled units instead of holding them: "
                    "enable again what it disabled, then confirm the reset")
        if not (isinstance(record, dict) and isinstance(record.get("name"), str)
                and isinstance(record.get("active"), bool) and isinstance(record.get("held"), bool)):
            return f"snapshot record {record!r} is not {{name, active, held}}"
    return None


def read_state(path: Path) -> tuple[dict[str, Any], str | None]:
    """The document in ``path`` (empty when missing) and, when it is unusable, why (naming the file)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}, None
    except OSError as exc:
        return {}, f"state file {path} is unreadable: {exc.strerror or exc}"
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        what = "empty" if not raw.strip() else f"not valid JSON ({exc})"
        return {}, f"state file {path} is {what}"
    problem = shape_problem(doc)
    if problem:
        return {}, f"state file {path} has the wrong shape: {problem}"
    return doc, None


class StateFile:
    """A JSON document of named sections, saved whole on every change.

    Thread-safe; sections are plain JSON values owned by one writer each
    (``machine``, ``session``, ``step:<name>``).
    """

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._doc, self.problem = read_state(path)

    def reload(self) -> bool:
        """Read the file again while it is unusable (an operator may have reset it); True once it is good.

        Sections written meanwhile (only kept in memory) are merged in and saved.
        """
        with self._lock:
            if self.problem is None:
                return True
            doc, problem = read_state(self.path)
            if problem is not None:
                self.problem = problem
                return False
            held, self._doc, self.problem = self._doc, doc, None
            self._doc.update(held)
            if held:
                self._write()
            return True

    def get(self, section: str, default: Any = None) -> Any:
        with self._lock:
            value = self._doc.get(section, default)
            return json.loads(json.dumps(value)) if value is not None else default

    def put(self, section: str, value: Any) -> None:
        """Change one section and save; raises ``StateFileUnwritable`` when the file cannot be written.

        While ``problem`` is set the change is kept in memory only: the unusable
        file is evidence an operator needs and is never overwritten.
        """
        with self._lock:
            if value is None:
                self._doc.pop(section, None)
            else:
                self._doc[section] = value
            if self.problem is None:
                self._write()

    def _write(self) -> None:
        try:
            atomic_write(self.path, json.dumps(self._doc, indent=1, sort_keys=True).encode())
        except OSError as exc:
            raise StateFileUnwritable(f"state file {self.path} cannot be written: {exc.strerror or exc}") from None

    def delete(self, section: str) -> None:
        self.put(section, None)


def confirm_reset(path: Path, now: datetime | None = None) -> str:
    """The operator's recovery from an unusable state file: keep it aside, start from an empty one.

    Returns what was done, in one line. A good file is left alone.
    """
    _, problem = read_state(path)
    if problem is None:
        return f"state file {path} is readable and well-formed: nothing to reset"
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    aside = path.with_name(f"{path.name}.unreadable-{stamp}")
    os.replace(path, aside)
    atomic_write(path, b"{}")
    return f"{problem}; kept as {aside}; {path} now starts empty (the box is taken as it is now)"
