"""GateKeeper: may this role of this box act now? Reads the fleet, asks the pure verdict, watches what it waits on.

The verdict itself is ``agent.core.gates.evaluate_gate``; this module brings
it what it needs (who belongs to which role, the status of each box the gate
reads), keeps the peers' watch on exactly those boxes while the gate is shut
and fails closed when the membership read cannot be trusted. It answers with
a ``GateCheck`` value and shows what a shut gate waits for in the box's
``blocked_on``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from agent.core.errors import MaintenanceAgentError
from agent.core.gates import evaluate_gate, roles_before
from agent.core.model import Intent, Member, Mode, Role, Status
from agent.daemon.decision.record import BoxRecord
from agent.daemon.local.metrics import AgentMetrics


class Peers(Protocol):
    """What a gate needs from the rest of the fleet (``agent.daemon.gates.peers.PeerView``)."""

    def members(self, roles: Collection[str] | None = None) -> list[Member]: ...
    def snapshot(self, boxes: Sequence[str]) -> Mapping[str, Status | None]: ...
    def watch(self, boxes: Sequence[str]) -> None: ...
    def unwatch(self) -> None: ...
    def read_budget(self) -> float: ...


@dataclass(frozen=True)
class GateCheck:
    """A gate's answer: ``open`` (``gated`` False: the first role of a direction has no gate), else
    ``blocked_on`` (shut, whom it waits for), ``error`` (the fleet could not be read) or only ``wait``
    (the read budget is spent); ``wait`` is when to look again."""

    open: bool
    gated: bool = True
    wait: float = 0.0
    blocked_on: str | None = None
    error: str | None = None
    failure: MaintenanceAgentError | None = None


class GateKeeper:
    def __init__(self, node: str, order: Sequence[Role], peers: Peers, record: BoxRecord, publish: Callable[[], None],
                 metrics: AgentMetrics, log: Any, resync: float):
        self.record = record
        self.publish = publish
        self.node = node
        self.order = list(order)
        self.peers = peers
        self.metrics = metrics
        self.log = log
        self.resync = resync
        self._opened: set[tuple[Role, int, Mode]] = set()  # gates logged open in this transition (cleared by done)
        self._shown: str | None = None  # the last blocked_on a gate showed (only that is cleared when a gate opens)

    def check(self, role: Role, intent: Intent, target: Mode) -> GateCheck:
        """Whether ``role`` may act towards ``target`` now.

        ``target`` is the effective direction, which differs from the intent's
        mode when ``auto_end`` ends a window.
        """
        earlier = {r.value for r in roles_before(role, self.order, target)}
        if not earlier:
            return GateCheck(open=True, gated=False)  # the first role of the direction waits for nobody
        budget = self.peers.read_budget()
        if budget > 0:
            return GateCheck(open=False, wait=budget)  # reads spent (a flapping intent): come back, never sleep here
        try:
            members = self.peers.members(earlier)  # only the earlier roles' boxes (and this one): not the whole fleet
            needed = [m.box for m in members if m.box != self.node and earlier & set(m.roles)]
            statuses = self.peers.snapshot(needed)
        except MaintenanceAgentError as exc:
            return GateCheck(open=False, error=f"cannot read the fleet from Consul: {exc}", failure=exc)
        if not any(m.box == self.node for m in members):
            # An empty or partial catalog (a token that may not read nodes,
            # a lost registration) must not look like "nobody to wait for".
            return GateCheck(open=False, error="this box is not among the registered maintenance-agent services of "
                             "its environment: the membership read is incomplete (ACL node/service read?), refusing to pass")
        verdict = evaluate_gate(role, self.order, intent, members, statuses, self.node, target=target)
        if verdict.released:
            self.log.warning("gate passes without released boxes", role=role.value, released=list(verdict.released))
        if not verdict.open:
            self.peers.watch(verdict.waiting_boxes)  # wake when one it waits for changes; re-evaluating then costs Consul nothing
            self.metrics.gate_blocked.set(1)
            return GateCheck(open=False, wait=self.resync, blocked_on=verdict.describe(role))
        self.metrics.gate_blocked.set(0)
        return GateCheck(open=True)

    def pass_(self, role: Role, intent: Intent, target: Mode) -> GateCheck:
        """``check``, and show what the gate waits for in ``record.blocked_on`` (published when it changes)."""
        gate = self.check(role, intent, target)
        if gate.blocked_on:
            self._shown = gate.blocked_on
            if self.record.show_blocked(gate.blocked_on):
                self.log.info("waiting at gate", role=role.value, blocked_on=gate.blocked_on, intent_index=intent.index)
                self.publish()
        elif gate.open and gate.gated:
            if (role, intent.index, target) not in self._opened:
                self._opened = {k for k in self._opened if k[1] == intent.index}  # a new intent: the old ones are history
                self._opened.add((role, intent.index, target))
                self.log.info("gate open", role=role.value, intent_index=intent.index)  # when the fleet let this role act
            # Clear only what a gate showed: a step still pending behind an open gate (jobs draining, the alert gate)
            # keeps its blocked_on, instead of it vanishing and coming back at every look.
            if self.record.blocked_on is not None and self.record.blocked_on == self._shown and self.record.show_blocked(None):
                self.publish()
        return gate

    def done(self) -> None:
        """The transition finished: stop watching the boxes the gates read."""
        self._opened.clear()
        self.peers.unwatch()
