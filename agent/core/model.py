"""Pure types shared by every layer: modes, states, roles, intents and statuses.

Nothing here does I/O; everything is immutable so a snapshot read once can be
passed around and compared safely.
"""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any


class Mode(str, enum.Enum):
    """What the operator asks for."""

    ACTIVE = "active"
    MAINTENANCE = "maintenance"


class State(str, enum.Enum):
    """Where one box is. ``entering``/``exiting`` are on the way."""

    ACTIVE = "active"
    ENTERING = "entering"
    MAINTENANCE = "maintenance"
    EXITING = "exiting"
    #: Reported by a box that lost its own memory (an unusable state file) and holds
    #: as it is. Not a state the machine moves through: nothing enters or leaves it but
    #: an operator's confirmation, and a gate never opens on it.
    UNKNOWN = "unknown"

    @classmethod
    def settled_for(cls, mode: Mode) -> State:
        return cls.MAINTENANCE if mode is Mode.MAINTENANCE else cls.ACTIVE


class Role(str, enum.Enum):
    EDGE = "edge"
    WEB = "web"
    WORKER = "worker"
    SCHEDULER = "scheduler"


DEFAULT_ORDER: tuple[Role, ...] = (Role.EDGE, Role.WEB, Role.WORKER, Role.SCHEDULER)
"""The order roles enter maintenance in; leaving runs it backwards."""


@dataclass(frozen=True)
class Intent:
    """What the ``desired`` key asks for, with its identity (the key's ModifyIndex).

    ``index`` 0 means "no key": the implicit ``active`` of a fresh environment.
    """

    mode: Mode
    index: int = 0
    reason: str = ""
    by: str = ""
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    message: str = ""
    release: tuple[str, ...] = ()
    auto_end: bool = False

    def to_json(self) -> str:
        doc: dict[str, Any] = {"mode": self.mode.value}
        for name in ("reason", "by", "message"):
            if getattr(self, name):
                doc[name] = getattr(self, name)
        for name in ("starts_at", "ends_at"):
            value = getattr(self, name)
            if value is not None:
                doc[name] = value.isoformat()
        if self.release:
            doc["release"] = list(self.release)
        if self.auto_end:
            doc["auto_end"] = True
        return json.dumps(doc, sort_keys=True)


@dataclass(frozen=True)
class Member:
    """A box registered for an environment: its name, roles and whether its agent is healthy."""

    box: str
    roles: tuple[str, ...]
    consul_node: str
    alive: bool
    check_output: str = ""
    #: The role order its agent gates by (``[agent] order``), as it registered it; empty when not published.
    order: tuple[str, ...] = ()


@dataclass(frozen=True)
class Status:
    """What a box reports under ``status/<node>``; written by that box only.

    On the wire ``state`` is its value and ``since`` an ISO 8601 timestamp.
    """

    node: str
    roles: tuple[str, ...]
    state: State
    intent_index: int
    #: When the box entered ``state`` (its own clock).
    since: datetime
    error: str | None = None
    blocked_on: str | None = None
    version: str = ""
    progress: dict[str, str] = field(default_factory=dict)
    desired: str | None = None
    scheduled_for: str | None = None
    intent_error: str | None = None
    #: Drift this box found and only reports (a role with ``drift = "report"``): what no longer holds.
    drift: str | None = None

    def gate_fields(self) -> tuple[State, int, tuple[tuple[str, str], ...]]:
        """What other boxes' gates read of a status (state, intent index, sorted progress): a change of
        anything else (a new ``blocked_on`` text) neither wakes a waiting gate nor draws on their write budget."""
        return (self.state, self.intent_index, tuple(sorted(self.progress.items())))

    def to_json(self) -> str:
        doc = asdict(self)
        doc["roles"] = list(self.roles)
        doc["state"] = self.state.value
        doc["since"] = self.since.isoformat()
        return json.dumps(doc, sort_keys=True)

    @classmethod
    def from_json(cls, raw: bytes | str) -> Status:
        """Parse a status key; ``ValueError``/``TypeError`` for anything not shaped like one."""
        doc = json.loads(raw)
        if not isinstance(doc, dict) or not isinstance(doc.get("progress", {}), dict):
            raise ValueError("a status is a JSON object whose progress is an object")
        known = {f for f in cls.__dataclass_fields__}
        doc = {k: v for k, v in doc.items() if k in known}
        doc["roles"] = tuple(doc.get("roles", ()))
        doc["state"] = State(doc.get("state"))
        since = doc.get("since")
        if not isinstance(since, str):
            raise ValueError("a status carries the time it entered its state as an ISO 8601 string")
        doc["since"] = datetime.fromisoformat(since)
        return cls(**doc)
