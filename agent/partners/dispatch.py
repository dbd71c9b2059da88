"""Exactly one notice per event per partner, even with several senders, and never on the decision thread.

Every edge box sees the actual start and end of a window, so each would send
the same notice. Instead each (event, partner) is *claimed* in Consul with a
check-and-set create (``cas=0`` succeeds for exactly one writer) under
``<prefix>/<env>/notices/<intent index>-<event>/<partner>``; the winner
delivers and keeps the delivery log (attempts, status, last error, the signed
body) in that same key, the others log that it is taken. ``maintctl
announce``/``on``/``off`` use the same claims, so a second operator running
``announce`` does not notify partners twice (``--again`` makes a new event).

Deliveries run on a small thread pool with per-attempt timeouts, so a partner
that never answers delays nothing but its own notice. A delivery cut short
by a restart stays ``sending`` in its key and is resumed by the claimant's
next start.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from agent.clients.consul import ConsulKV
from agent.config.partners import NoticesSection, PartnerSection
from agent.core.errors import MaintenanceAgentError
from agent.core.model import Intent, Mode, State
from agent.partners.notices import Delivery, Notice, WebhookSender, notice_for

AGENT_EVENTS = ("start", "end")
"""The events agents send; ``announce``, ``on`` and ``off`` come from maintctl."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


class NoticeDispatcher:
    def __init__(self, gateway: ConsulKV, env_prefix: str, environment: str, sender_name: str,
                 section: NoticesSection, log: Any, clock: Callable[[], datetime] = _utc_now, workers: int = 4):
        self.gateway = gateway
        self.prefix = f"{env_prefix}/notices"
        self.environment = environment
        self.sender_name = sender_name
        self.section = section
        self.log = log
        self.clock = clock
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"notices:{sender_name}")
        self._sender = WebhookSender(section.timeout_seconds, section.attempts, section.backoff_seconds,
                                     section.backoff_max_seconds, stop=self._stop)

    def key(self, event_id: str, partner: str) -> str:
        """Where the claim and delivery log of one event (``<intent index>-<event>``) for one partner live."""
        return f"{self.prefix}/{event_id}/{partner}"

    # -- sending -------------------------------------------------------------------

    def notice(self, event: str, intent: Intent, window: Intent | None = None) -> Notice:
        return notice_for(event, self.environment, intent, self.clock(), self.section.api_impact, window)

    def send(self, notice: Notice) -> list[Future[Delivery | None]]:
        """Claim and deliver ``notice`` to every partner that wants its kind; returns at once."""
        kind = notice.event.split("-", 1)[0]
        partners = [p for p in self.section.partners if kind in p.events]
        return [self._pool.submit(self._claim_and_deliver, partner, notice) for partner in partners]

    def on_transition(self, source: State, dest: State, intent: Intent | None) -> None:
        """Reconciler hook (edge boxes): the actual start and end of a window. Never blocks."""
        if intent is None or intent.index == 0:
            return
        if dest is State.MAINTENANCE and intent.mode is Mode.MAINTENANCE:
            self.send(self.notice("start", intent))
        elif dest is State.ACTIVE and source is State.EXITING and intent.mode is Mode.ACTIVE:
            self.send(self.notice("end", intent))

    def resume(self) -> list[Future[Delivery | None]]:
        """Finish deliveries this sender claimed but did not finish (it was stopped or crashed)."""
        try:
            keys = self.gateway.list_prefix(self.prefix + "/")
        except MaintenanceAgentError as exc:
            self.log.warning("cannot list notice deliveries to resume", error=str(exc))
            return []
        futures: list[Future[Delivery | None]] = []
        partners = {p.name: p for p in self.section.partners}
        for key, read in keys.items():
            try:
                delivery = Delivery.from_json(read.value or b"")
            except (ValueError, TypeError, KeyError):
                continue
            partner = partners.get(delivery.partner)
            if delivery.claimed_by == self.sender_name and delivery.state == "sending" and partner is not None:
                self.log.info("resuming a notice delivery", notice=delivery.notice_id, partner=partner.name)
                futures.append(self._pool.submit(self._deliver, key, partner, delivery))
        return futures

    def stop(self) -> None:
        self._stop.set()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- one partner -----------------------------------------------------------------

    def _claim_and_deliver(self, partner: PartnerSection, notice: Notice) -> Delivery | None:
        key = self.key(f"{notice.intent_index}-{notice.event}", partner.name)
        delivery = Delivery(notice_id=notice.id, event=notice.event, partner=partner.name, url=partner.url, claimed_by=self.sender_name,
                            claimed_at=self.clock().isoformat(), body=notice.body().decode())
        try:
            claimed = self.gateway.put_key(key, delivery.to_json(), cas=0)
        except MaintenanceAgentError as exc:
            self.log.error("cannot claim a partner notice; not sent", notice=notice.id, partner=partner.name, error=str(exc))
            return None
        if not claimed:
            self.log.info("partner notice already claimed by another sender", notice=notice.id, partner=partner.name)
            return None
        return self._deliver(key, partner, delivery)

    def _deliver(self, key: str, partner: PartnerSection, delivery: Delivery) -> Delivery:
        def record(current: Delivery) -> None:
            try:
                self.gateway.put_key(key, current.to_json())
            except MaintenanceAgentError as exc:
                self.log.warning("cannot record a notice attempt", notice=current.notice_id, partner=partner.name, error=str(exc))

        try:
            secret = partner.resolved_secret()
        except OSError as exc:
            delivery.state = "failed"
            delivery.attempts = []
            record(delivery)
            self.log.error("cannot read a partner's secret; notice not sent", partner=partner.name, error=str(exc))
            return delivery
        result = self._sender.deliver(delivery, secret, record)
        last = result.attempts[-1] if result.attempts else None
        log = self.log.info if result.state == "delivered" else self.log.error
        log("partner notice " + result.state, notice=result.notice_id, partner=partner.name, attempts=len(result.attempts),
            status=last.status if last else None, error=last.error if last else None)
        return result
