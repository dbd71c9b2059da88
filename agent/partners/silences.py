"""Silence the alerts a maintenance window is expected to fire, as a lease that cannot outlive its holder.

While the fleet is in maintenance, HAProxy backends are down, workers are
stopped and jobs go stale on purpose; paging someone for that is noise. A
silence in Alertmanager (v2 API) covers those alerts, but a silence with the
window's end as its end would stay if the window is cut short by a crash, and
one with a far end would mute alerting for days. So the silence is a *lease*:
its ``endsAt`` is always ``now + lease`` and the edge agents (first in, last
out of every window) push it forward every ``renew`` seconds while their box
is not back to active. If every edge agent dies, the silence ends on its own
within one lease. When the whole fleet is back it is deleted.

The periodic job alone would leave the first ``renew`` seconds of a window
unsilenced (and keep the silence as long after it), so the reconciler's
transition hook also ticks the lease: when the edge starts entering, before
the window's first step, and when it is back to active (the last box of
the fleet to leave).

Several edge boxes share one silence: its id lives in Consul under
``<prefix>/<env>/silence``; creating it is claimed with a check-and-set create
(``cas=0``), so exactly one box creates it, and any of them extends it
(extending is idempotent: a POST with the same id). A claim is taken over only
when its claimant cannot still be at work (longer than two renewals *and* two
Alertmanager request timeouts), so a slow creation is not raced by a second box.

Alertmanager extends an active silence in place only when it is sent the
start it holds, to the second, and it moves a new silence's start to its own
clock: the record keeps the start Alertmanager reports after every write, never
the one this box asked for (with the box's own, every extension that crossed a
second, or a clock a second off, replaced the silence by a new one).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from agent.clients.alertmanager import AlertmanagerClient, iso_time, parse_time
from agent.core.errors import MaintenanceAgentError
from agent.core.model import Intent, Member, State, Status

if TYPE_CHECKING:
    from agent.clients.consul import ConsulKV
    from agent.config.partners import AlertmanagerMatcher


@dataclass(frozen=True)
class LeaseRecord:
    """What ``<prefix>/<env>/silence`` holds: the silence's id (empty while being created) and its current end."""

    id: str
    holder: str
    ends_at: str
    intent_index: int
    starts_at: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, raw: bytes) -> LeaseRecord:
        return cls(**json.loads(raw))


def matchers_for(configured: list[AlertmanagerMatcher], environment: str) -> list[dict[str, Any]]:
    """Alertmanager matchers: the configured ones plus ``env = <environment>`` unless an env matcher is given."""
    out = [{"name": m.name, "value": m.value, "isRegex": m.is_regex, "isEqual": m.is_equal} for m in configured]
    if not any(m.name == "env" for m in configured):
        out.append({"name": "env", "value": environment, "isRegex": False, "isEqual": True})
    return out


class FleetStatuses(Protocol):
    """What ``fleet_is_back`` needs (``agent.daemon.gates.peers.PeerView``)."""

    def members(self) -> list[Member]: ...

    def snapshot(self, boxes: Iterable[str]) -> Mapping[str, Status | None]: ...


def fleet_is_back(fleet: FleetStatuses, intent: Intent, own: Status | None = None) -> bool:
    """Every registered box (except released ones) reports active for ``intent``.

    ``own`` is this box's status as it is now (its key in Consul may lag a
    moment behind). A silent box keeps this false: the silence is then no
    longer extended (this box is active) and ends by itself within one lease.
    """
    boxes = [m.box for m in fleet.members() if m.box not in intent.release]
    statuses = dict(fleet.snapshot(boxes))
    if own is not None and own.node in statuses:
        statuses[own.node] = own
    return all(s is not None and s.state is State.ACTIVE and s.intent_index == intent.index for s in statuses.values())


class SilenceLease:
    """One edge agent's share of the silence lease; ``tick()`` runs every ``renew`` seconds on the agent's scheduler."""

    def __init__(self, gateway: ConsulKV, key: str, client: AlertmanagerClient, matchers: list[dict[str, Any]],
                 lease: float, renew: float, node: str, created_by: str, box: Callable[[], tuple[State, Intent | None]],
                 fleet_back: Callable[[Intent], bool], log: Any,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.gateway = gateway
        self.key = key
        self.client = client
        self.matchers = matchers
        self.lease = timedelta(seconds=lease)
        self.renew = timedelta(seconds=renew)
        self.node = node
        self.created_by = created_by
        self.box = box
        self.fleet_back = fleet_back
        self.log = log
        self.clock = clock
        self._lock = threading.Lock()  # the periodic job and the transition hook tick from two threads

    def on_transition(self, source: State, dest: State, intent: Intent | None) -> None:
        """Reconciler hook: silence as the edge starts entering, unsilence as it is back. Never raises."""
        if dest in (State.ENTERING, State.ACTIVE):
            self.tick()

    def tick(self) -> None:
        """Hold the silence while this box is in a window; remove it once the whole fleet is back. Never raises."""
        with self._lock:
            self._tick()

    def _tick(self) -> None:
        try:
            state, intent = self.box()
            if intent is None:
                return
            if state is not State.ACTIVE:
                self._hold(intent)
            else:
                self._release(intent)
        except (MaintenanceAgentError, ValueError, KeyError, TypeError) as exc:
            self.log.warning("alert silence lease: will retry", error=str(exc))

    def _comment(self, intent: Intent) -> str:
        return (f"maintenance window (intent {intent.index}): expected alerts silenced; a lease renewed every "
                f"{self.renew.total_seconds():g}s by the edge agents, ends by itself {self.lease.total_seconds():g}s "
                f"after the last renewal")

    def _hold(self, intent: Intent) -> None:
        read = self.gateway.get_key(self.key)
        now = self.clock()
        if not read.exists:
            claim = LeaseRecord(id="", holder=self.node, ends_at=iso_time(now), intent_index=intent.index)
            if not self.gateway.put_key(self.key, claim.to_json(), cas=0):
                return  # another edge box creates it
            claimed = self.gateway.get_key(self.key)
            self._put(intent, None, now, now, claimed.modify_index, created=True)
            return
        record = LeaseRecord.from_json(read.value or b"{}")
        due = parse_time(record.ends_at) - now < self.lease - self.renew
        if due and (record.id or self._abandoned(record, now)):
            # Alertmanager extends an active silence in place only if its start stays the same (to the second).
            starts = parse_time(record.starts_at) if record.id and record.starts_at else now
            self._put(intent, record.id or None, starts, now, read.modify_index, created=not record.id)

    def _abandoned(self, claim: LeaseRecord, now: datetime) -> bool:
        """A claim without a silence whose claimant cannot still be creating it (it died between claim and write).

        The claimant's work is one Alertmanager POST and GET and one Consul write: a claim younger than two
        request timeouts (and two renewals) may just be slow, and taking it over would make a second silence.
        """
        patience = max(2 * self.renew, timedelta(seconds=2 * self.client.timeout + 1))
        return not claim.id and now - parse_time(claim.ends_at) > patience

    def _put(self, intent: Intent, silence_id: str | None, starts: datetime, now: datetime, modify_index: int, created: bool) -> None:
        ends = now + self.lease
        new_id = self.client.put_silence(self.matchers, starts, ends, self.created_by, self._comment(intent), silence_id)
        held_start = self.client.silence_start(new_id)  # Alertmanager's start, which the next extension must repeat
        record = LeaseRecord(id=new_id, holder=self.node, ends_at=iso_time(ends), intent_index=intent.index, starts_at=held_start)
        if self.gateway.put_key(self.key, record.to_json(), cas=modify_index):
            if created or new_id != silence_id:
                self.log.info("alerts silenced for the maintenance window", silence_id=new_id, ends_at=record.ends_at)
        elif created or new_id != silence_id:
            # Lost the write: another box recorded its own silence meanwhile; ours must not linger.
            self.client.delete_silence(new_id)

    def _release(self, intent: Intent) -> None:
        read = self.gateway.get_key(self.key)
        if not read.exists or not self.fleet_back(intent):
            return
        record = LeaseRecord.from_json(read.value or b"{}")
        if record.id:
            self.client.delete_silence(record.id)
        if self.gateway.delete_key(self.key, cas=read.modify_index):
            self.log.info("alert silence removed: the fleet is back", silence_id=record.id)
