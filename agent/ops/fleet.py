"""What an operator sees of one environment, read once, and the only way maintctl changes the intent.

``FleetReader`` reads the ``desired`` key, every ``status/<node>`` key and the
registered boxes into one immutable ``FleetSnapshot``; every verdict
(converged, the fleet's phase, who blocks) is derived from that snapshot
alone, never from a second half-read. ``follow()`` yields a new snapshot each
time Consul reports a change, using blocking queries (never a polling loop).
``IntentWriter`` writes the intent with check-and-set: a change made by
someone else between our read and our write is reported, never overwritten.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agent.clients.blocking import QueryFailed, blocking_answers
from agent.clients.consul import ConsulKV, KeyRead
from agent.core.errors import CasConflict, IntentError, MaintenanceAgentError
from agent.core.gates import roles_in_direction
from agent.core.intent import parse_intent
from agent.core.model import DEFAULT_ORDER, Intent, Mode, Role, State, Status


class NoAgents(MaintenanceAgentError):
    """No maintenance agent is registered for the environment (often a mistyped --env)."""


@dataclass(frozen=True)
class BoxView:
    """One box as the operator sees it: registration (from Consul's catalog) and its own status key."""

    node: str
    roles: tuple[str, ...]
    registered: bool
    alive: bool
    status: Status | None
    raw_status: dict[str, Any] | None
    released: bool = False
    unreadable: bool = False
    #: The Consul nodes of its registrations when there is more than one: two agents configured with the same
    #: node name (the second never takes the status key, so only its registration shows it).
    twins: tuple[str, ...] = ()
    order: tuple[str, ...] = ()  # the role order its agent registered (``[agent] order``); empty if it did not say

    @property
    def twin_conflict(self) -> str | None:
        if not self.twins:
            return None
        return f"registered by {len(self.twins)} agents (Consul nodes {', '.join(self.twins)}): the same node name configured twice"

    @property
    def silent(self) -> bool:
        """Registered, but no status key: the agent is down or never came up."""
        return self.status is None

    def role_settled(self, role: str, intent: Intent) -> bool:
        if self.status is None or self.status.intent_index != intent.index:
            return False
        settled = State.settled_for(intent.mode).value
        return self.status.progress.get(role, self.status.state) == settled

    def problem(self, intent: Intent) -> str | None:
        """Why this box is not converged to ``intent`` (None when it is, or when it was released)."""
        if self.released:
            return None
        if self.twin_conflict:
            return self.twin_conflict
        if self.status is None:
            return "unreadable status" if self.unreadable else ("silent: no status, agent down?" if not self.alive else "silent: no status yet")
        settled = State.settled_for(intent.mode).value
        detail = self.status.error or self.status.intent_error or self.status.blocked_on
        if self.status.intent_index != intent.index:
            return f"still on intent {self.status.intent_index} ({self.status.state.value})" + (f": {detail}" if detail else "")
        if self.status.state != settled:
            return self.status.state.value + (f": {detail}" if detail else "")
        return None


@dataclass(frozen=True)
class RoleProgress:
    role: str
    done: int
    total: int


@dataclass(frozen=True)
class FleetSnapshot:
    """The desired key, the statuses and the membership of one environment, read together."""

    environment: str
    desired_key: str
    index: int
    desired: KeyRead
    intent: Intent | None
    intent_error: str | None
    boxes: tuple[BoxView, ...]

    @property
    def desired_modify_index(self) -> int:
        return self.desired.modify_index if self.desired.exists else 0

    def box(self, node: str) -> BoxView | None:
        return next((b for b in self.boxes if b.node == node), None)

    @property
    def converged(self) -> bool:
        if self.intent is None or not self.boxes:
            return False
        return all(b.problem(self.intent) is None for b in self.boxes)

    def blockers(self) -> list[str]:
        if self.intent is None:
            return [f"{self.desired_key}: {self.intent_error}"]
        if not self.boxes:
            return [f"no agents registered for environment {self.environment!r}"]
        conflict = [f"order: {c}"] if (c := self.order_conflict()) else []
        return conflict + [f"{b.node}: {p}" for b in self.boxes if (p := b.problem(self.intent))]

    @property
    def order(self) -> tuple[Role, ...]:
        """The role order the agents gate by (``[agent] order``, from their registrations); the default when none
        says, or when they disagree (``order_conflict``)."""
        orders = self._orders()
        if len(orders) == 1:
            try:
                return tuple(Role(r) for r in next(iter(orders)))
            except ValueError:  # a role this maintctl does not know: a newer agent
                return DEFAULT_ORDER
        return DEFAULT_ORDER

    def order_conflict(self) -> str | None:
        """Boxes whose agents gate by different orders can wait on each other for ever: say which say what."""
        orders = self._orders()
        if len(orders) < 2:
            return None
        said = "; ".join(f"{' > '.join(order)} on {', '.join(nodes[:3])}" + (f" and {len(nodes) - 3} more" if len(nodes) > 3 else "")
                         for order, nodes in sorted(orders.items(), key=lambda item: -len(item[1])))
        return f"the agents disagree on the role order ([agent] order), so gates may wait on each other for ever: {said}"

    def _orders(self) -> dict[tuple[str, ...], list[str]]:
        out: dict[tuple[str, ...], list[str]] = {}
        for box in self.boxes:
            if box.order and not box.released:
                out.setdefault(box.order, []).append(box.node)
        return out

    def drift(self) -> list[str]:
        """Drift the boxes report and leave alone (roles with ``drift = "report"``), one line per box."""
        return [f"{b.node}: {b.status.drift}" for b in self.boxes if b.status is not None and b.status.drift and not b.released]

    def verdict(self) -> int:
        """``maintctl status``'s exit code: 0 converged and nothing drifted, 1 not yet (or drift reported), 2 no valid intent."""
        if self.intent is None:
            return 2
        return 0 if self.converged and not self.drift() and not self.order_conflict() else 1

    def roles_progress(self) -> list[RoleProgress]:
        """Per role, in the order of the intent's direction: how many boxes have it settled."""
        if self.intent is None:
            return []
        out = []
        for role in roles_in_direction(self.order, self.intent.mode):
            holders = [b for b in self.boxes if role.value in b.roles and not b.released]
            if holders:
                done = sum(1 for b in holders if b.role_settled(role.value, self.intent))
                out.append(RoleProgress(role.value, done, len(holders)))
        return out

    def phase(self, now: datetime) -> str:
        """``maintenance``, ``active``, ``scheduled for …`` or ``entering: edge done, web 1/2, worker 0/2``."""
        if self.intent is None:
            return "intent invalid"
        if not self.boxes:
            return "no agents"
        if self.converged:
            return State.settled_for(self.intent.mode).value
        if self.intent.mode is Mode.MAINTENANCE and self.intent.starts_at and self.intent.starts_at > now:
            return f"scheduled for {self.intent.starts_at.isoformat()}"
        direction = "entering" if self.intent.mode is Mode.MAINTENANCE else "exiting"
        parts = [f"{p.role} done" if p.done == p.total else f"{p.role} {p.done}/{p.total}" for p in self.roles_progress()]
        return f"{direction}: " + ", ".join(parts) if parts else direction

    def reached_at(self) -> datetime | None:
        """When the fleet got where it is: the latest ``since`` of the converged boxes (their own clocks)."""
        if not self.converged:
            return None
        moments = [b.status.since for b in self.boxes if b.status is not None and not b.released]
        return max(moments) if moments else None

    def to_dict(self, now: datetime) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "desired": {
                "key": self.desired_key,
                "value": self.desired.value.decode("utf-8", "replace") if self.desired.value is not None else None,
                "modify_index": self.desired_modify_index,
                "intent": json.loads(self.intent.to_json()) if self.intent else None,
                "error": self.intent_error,
            },
            "phase": self.phase(now),
            "converged": self.converged,
            "roles": [{"role": p.role, "done": p.done, "total": p.total} for p in self.roles_progress()],
            "blocked": [] if self.converged else self.blockers(),
            "drift": self.drift(),
            "order": [r.value for r in self.order],
            "order_conflict": self.order_conflict(),
            "boxes": [{
                "node": b.node, "roles": list(b.roles), "registered": b.registered, "alive": b.alive,
                "silent": b.silent, "released": b.released, "status": b.raw_status,
                "problem": b.problem(self.intent) if self.intent else None,
            } for b in self.boxes],
        }


class FleetReader:
    """Reads one environment's keys and members through the gateway; knows the key layout."""

    def __init__(self, gateway: ConsulKV, prefix: str, environment: str, wait: float = 15.0):
        self.gateway = gateway
        self.environment = environment
        self.env_prefix = f"{prefix.strip('/')}/{environment}"
        self.desired_key = f"{self.env_prefix}/desired"
        self.status_prefix = f"{self.env_prefix}/status/"
        self.wait = wait

    def read(self, status_index: int = 0, wait: float | None = None) -> FleetSnapshot:
        """One snapshot; with ``status_index`` > 0 first block until a status key changes (or ``wait`` passes)."""
        index, statuses = self.gateway.read_prefix(self.status_prefix, index=status_index, wait=wait)
        desired = self.gateway.get_key(self.desired_key, consistent=True)
        _, members = self.gateway.members(self.environment)
        return self._snapshot(index, desired, statuses, members)

    def follow(self, deadline: float | None = None) -> Iterator[FleetSnapshot]:
        """The current snapshot, then one after every change, until ``deadline`` (time.monotonic()).

        Blocks on the status prefix (agents write there within milliseconds of
        any intent change; a dying agent's key vanishes with its session). The
        bounded ``wait`` also re-reads the membership and the desired key, so a
        box that registers without ever reporting still shows up.
        """
        for answer in blocking_answers(self._read_at, self.wait, deadline=deadline, what=self.status_prefix):
            if isinstance(answer, QueryFailed):  # pragma: no cover - without a backoff a failure is raised
                raise answer.error
            yield answer

    def _read_at(self, index: int, wait: float | None) -> tuple[int, FleetSnapshot]:
        snapshot = self.read(status_index=index, wait=wait)
        return snapshot.index, snapshot

    def _snapshot(self, index: int, desired: KeyRead, statuses: dict[str, KeyRead], members: list[Any]) -> FleetSnapshot:
        intent: Intent | None
        intent_error = None
        if not desired.exists:
            intent = Intent(mode=Mode.ACTIVE, index=0)
        else:
            try:
                intent = parse_intent(desired.value or b"", desired.modify_index)
            except IntentError as exc:
                intent, intent_error = None, str(exc)
        released = set(intent.release) if intent else set()
        registered = {m.box: m for m in members}
        nodes: dict[str, list[str]] = {}
        for m in members:
            nodes.setdefault(m.box, []).append(m.consul_node)
        reported: dict[str, tuple[Status | None, dict[str, Any] | None]] = {}
        for key, read in statuses.items():
            node = key[len(self.status_prefix):]
            if not node or "/" in node:
                continue
            try:
                raw = json.loads(read.value or b"")
                reported[node] = (Status.from_json(read.value or b""), raw)
            except (ValueError, TypeError):
                reported[node] = (None, None)
        boxes = []
        for node in sorted(set(registered) | set(reported)):
            member = registered.get(node)
            status, raw = reported.get(node, (None, None))
            roles = member.roles if member else (status.roles if status else ())
            boxes.append(BoxView(node=node, roles=tuple(roles), registered=member is not None,
                                 alive=bool(member and member.alive), status=status, raw_status=raw,
                                 released=node in released, unreadable=node in reported and status is None,
                                 twins=tuple(sorted(nodes[node])) if len(nodes.get(node, ())) > 1 else (),
                                 order=member.order if member else ()))
        return FleetSnapshot(environment=self.environment, desired_key=self.desired_key, index=index, desired=desired,
                             intent=intent, intent_error=intent_error, boxes=tuple(boxes))


class IntentWriter:
    """Writes the ``desired`` key only with check-and-set against the index it was read at."""

    def __init__(self, gateway: ConsulKV, desired_key: str):
        self.gateway = gateway
        self.desired_key = desired_key

    def write(self, intent: Intent, read_at: int) -> int:
        """Write ``intent`` if the key is still at ``read_at`` (0: still missing); return its new ModifyIndex."""
        value = intent.to_json()
        if not self.gateway.put_key(self.desired_key, value, cas=read_at):
            now = self.gateway.get_key(self.desired_key, consistent=True)
            shown = (now.value or b"").decode("utf-8", "replace") if now.exists else "deleted"
            raise CasConflict(f"someone else changed {self.desired_key} since it was read (now: {shown}); not overwritten")
        after = self.gateway.get_key(self.desired_key, consistent=True)
        return after.modify_index
