"""Fakes for unit tests: a fleet, steps that record what they did, a collecting publisher.

The real edges (Consul, HAProxy, supervisord) are tested against the real
services in tests/integration; these fakes only let the pure core be tested
fast and table-driven.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import structlog

from agent.clients.consul import KeyRead
from agent.core.errors import StepError, StepPending
from agent.core.model import Member, Mode, Role, Status
from agent.daemon.metrics import AgentMetrics
from agent.daemon.reconcile import Reconciler
from agent.daemon.statefile import StateFile
from agent.daemon.steps.base import Step, StepContext
from agent.daemon.watcher import KeyChanged


@dataclass
class FakePeers:
    members_list: list[Member] = field(default_factory=list)
    statuses: dict[str, Status | None] = field(default_factory=dict)
    watched: list[tuple[str, ...]] = field(default_factory=list)

    def members(self) -> list[Member]:
        return list(self.members_list)

    def snapshot(self, boxes: Sequence[str]) -> dict[str, Status | None]:
        return {b: self.statuses.get(b) for b in boxes}

    def watch(self, boxes: Sequence[str]) -> None:
        self.watched.append(tuple(boxes))

    def unwatch(self) -> None:
        self.watched.append(())

    def read_budget(self) -> float:
        return 0.0


class RecordingStep(Step):
    """Holds a boolean 'applied'; records every call; can be told to fail or be pending."""

    def __init__(self, name: str, role: Role, journal: list[str]):
        self.name = name
        self.role = role
        self.journal = journal
        self.applied = False
        self.fail_next = 0
        self.pending: str | None = None
        self.lie = False  # apply() reports success but nothing holds

    def check(self, ctx: StepContext, target: Mode) -> bool:
        return self.applied == (target is Mode.MAINTENANCE)

    def apply(self, ctx: StepContext) -> None:
        self._act("apply", True)

    def revert(self, ctx: StepContext) -> None:
        self._act("revert", False)

    def _act(self, verb: str, value: bool) -> None:
        self.journal.append(f"{verb}:{self.name}")
        if self.fail_next:
            self.fail_next -= 1
            raise StepError(self.name, f"{verb} failed on purpose")
        if self.pending:
            raise StepPending(self.pending, recheck_after=0.01)
        if not self.lie:
            self.applied = value


def read(value: bytes | None, modify_index: int) -> KeyChanged:
    return KeyChanged("maintenance/t/desired", KeyRead(index=modify_index, value=value, modify_index=modify_index if value is not None else 0))


def make_reconciler(tmp_path, roles: Sequence[Role], steps: dict[Role, list[Step]], peers: FakePeers | None = None,
                    node: str = "box-1", on_tick: Callable[[], None] | None = None) -> tuple[Reconciler, list[Status]]:
    published: list[Status] = []
    peers = peers or FakePeers()
    if not any(m.box == node for m in peers.members_list):
        peers.members_list.append(Member(node, tuple(r.value for r in roles), node, True))
    reconciler = Reconciler(
        node=node, roles=roles, order=list(Role), steps=steps,
        memory=StateFile(tmp_path / "state.json"), peers=peers,
        publish=published.append, metrics=AgentMetrics(), log=structlog.get_logger(),
        retry_max=0.05, resync=0.05, on_tick=on_tick,
    )
    return reconciler, published


def settle(reconciler: Reconciler, ticks: int = 20) -> None:
    """Run ticks until the reconciler has nothing left to do right now (no sleeping)."""
    import time

    for _ in range(ticks):
        wait = reconciler.tick()
        if wait > 0 and reconciler.state.value in ("active", "maintenance"):
            return
        time.sleep(min(wait, 0.06))
