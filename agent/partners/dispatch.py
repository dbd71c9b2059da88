"""Exactly one notice per event per recipient and channel, even with several senders, and never on the decision thread.

Every edge box sees the actual start and end of a window, so each would send
the same notice. Instead each (event, recipient, channel) is *claimed* in
Consul with a check-and-set create (``cas=0`` succeeds for exactly one writer)
under ``<prefix>/<env>/notices/<intent index>-<event>/<recipient>/<channel>``
(channel ``webhook``, ``email``, or ``chat`` for the team, recipient ``_team``);
the winner delivers and keeps the delivery log (every attempt, recorded
before it is sent; state; the body sent) in that same key, the others log that
it is taken. ``maintctl announce``/``on``/``off`` use the same claims, so a
second operator running ``announce`` does not notify partners twice
(``--again`` makes a new event).

The ``end`` notice is sent for the intent that closed the window, but it
speaks of the window: when it started, its announced end, reason and
identity. The ``start`` therefore records the window under
``<prefix>/<env>/window`` (with its actual start when none was announced),
so the ``end`` names it even if the agent that sends it restarted meanwhile
or is not the one that saw the start.

Each channel has its own small thread pool and every attempt a timeout, so a
partner that never answers, or an SMTP relay that is down or slow, delays
nothing but its own notices. A delivery cut short by a restart stays
``sending`` in its key and is resumed by the claimant's next start.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from agent.config.methods import mailbox
from agent.core.errors import MaintenanceAgentError
from agent.core.model import Intent, Mode, State
from agent.partners.calendar_state import CalendarLedger
from agent.partners.chat import TEAM, ChatSender, payload, where, window_text
from agent.partners.delivery import Delivery
from agent.partners.mail import SmtpSender, compose
from agent.partners.notices import Notice, notice_for
from agent.partners.webhook import WebhookSender

if TYPE_CHECKING:
    from agent.clients.consul import ConsulKV
    from agent.config.partners import NoticesSection, PartnerSection

AGENT_EVENTS = ("start", "end")
"""The events agents send; ``announce``, ``on`` and ``off`` come from maintctl."""

CHANNELS = ("webhook", "email", "chat")


def _utc_now() -> datetime:
    return datetime.now(UTC)


def wanted(partner: PartnerSection, channel: str, notice: Notice) -> bool:
    """Whether ``partner`` gets ``notice`` over ``channel``: the events it chose; and, by email, every change of a
    calendar entry it was invited to (a window moved by ``on --replace``, or withdrawn), whatever its ``events``,
    so no entry stays in its calendar where the window no longer is."""
    if notice.kind in partner.events:
        return True
    invited = any(kind in partner.events for kind in ("announce", "on", "start"))
    return channel == "email" and invited and (notice.replaces is not None or notice.withdrawn)


@dataclass(frozen=True)
class Sending:
    """One delivery under way: to whom, how, and its result (None: claimed by another sender, or not sent)."""

    recipient: str
    channel: str
    result: Future[Delivery | None]


class NoticeDispatcher:
    def __init__(self, gateway: ConsulKV, env_prefix: str, environment: str, sender_name: str,
                 section: NoticesSection, log: Any, clock: Callable[[], datetime] = _utc_now, workers: int = 4):
        self.gateway = gateway
        self.prefix = f"{env_prefix}/notices"
        self.window_key = f"{env_prefix}/window"
        self.environment = environment
        self.sender_name = sender_name
        self.section = section
        self.log = log
        self.clock = clock
        self.calendar = CalendarLedger(gateway, f"{env_prefix}/calendar")
        self._stop = threading.Event()
        self._pools = {c: ThreadPoolExecutor(max_workers=workers if c == "webhook" else 2, thread_name_prefix=f"{c}:{sender_name}")
                       for c in CHANNELS}
        # Recording a window and reading it for its end, in the order the transitions came.
        self._window_line = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"notices-window:{sender_name}")
        retry = (section.attempts, section.backoff_seconds, section.backoff_max_seconds)
        self._webhooks = WebhookSender(section.timeout_seconds, *retry, stop=self._stop)
        self._mail = SmtpSender(section.smtp, *retry, stop=self._stop) if section.smtp else None
        chat = section.chat
        self._chat = ChatSender(chat.resolved_url, chat.timeout_seconds, *retry, stop=self._stop) if chat else None

    def key(self, event_id: str, recipient: str, channel: str = "webhook") -> str:
        """Where the claim and delivery log of one event (``<intent index>-<event>``) to one recipient over one channel live."""
        return f"{self.prefix}/{event_id}/{recipient}/{channel}"

    # -- sending -------------------------------------------------------------------

    def notice(self, event: str, intent: Intent, window: Intent | None = None, replaces: int | None = None) -> Notice:
        return notice_for(event, self.environment, intent, self.clock(), self.section.api_impact, window, replaces)

    def send(self, notice: Notice) -> list[Sending]:
        """Claim and deliver ``notice`` to every partner (each channel) and the team's chat that want its kind; returns at once."""
        out = [Sending(p.name, channel, self._pools[channel].submit(self._claim_and_deliver, p, channel, notice))
               for p in self.section.partners for channel in p.channels() if wanted(p, channel, notice)]
        chat = self.section.chat
        if chat is not None and notice.kind in chat.events:
            out.append(Sending(TEAM, "chat", self.post_team(f"{notice.intent_index}-{notice.event}", notice.event, window_text(notice))))
        return out

    def post_team(self, event_id: str, event: str, text: str) -> Future[Delivery | None]:
        """Tell the team's chat ``text``, once per ``event_id`` whoever sends it (blocked, overrun, window events)."""
        return self._pools["chat"].submit(self._claim_and_post, event_id, event, text)

    def on_transition(self, source: State, dest: State, intent: Intent | None) -> None:
        """Reconciler hook (edge boxes): the actual start and end of a window. Never blocks."""
        if intent is None or intent.index == 0:
            return
        if dest is State.MAINTENANCE and intent.mode is Mode.MAINTENANCE:
            notice = self.notice("start", intent)
            self._window_line.submit(self._record_window, intent, notice)
            self.send(notice)
        elif dest is State.ACTIVE and source is State.EXITING and intent.mode is Mode.ACTIVE:
            self._window_line.submit(self._send_end, intent)

    # -- the window an end notice speaks of ----------------------------------------

    def _record_window(self, intent: Intent, start: Notice) -> None:
        record = {"index": intent.index, "reason": intent.reason, "message": intent.message,
                  "starts_at": (intent.starts_at or start.sent_at).isoformat(),
                  "ends_at": intent.ends_at.isoformat() if intent.ends_at else None}
        try:
            read = self.gateway.get_key(self.window_key)
            if read.exists and json.loads(read.value or b"{}").get("index") == intent.index:
                return  # another edge box (or this one before a restart) recorded it first: keep its start time
            self.gateway.put_key(self.window_key, json.dumps(record, sort_keys=True), cas=read.modify_index if read.exists else 0)
        except (MaintenanceAgentError, ValueError) as exc:
            self.log.warning("cannot record the window for its end notice", intent_index=intent.index, error=str(exc))

    def window_before(self, closing: Intent) -> Intent | None:
        """The maintenance window that ``closing`` ends, as recorded at its start (None when none was)."""
        try:
            read = self.gateway.get_key(self.window_key)
            if not read.exists:
                return None
            doc = json.loads(read.value or b"{}")
            if int(doc["index"]) >= closing.index:
                return None
            return Intent(mode=Mode.MAINTENANCE, index=int(doc["index"]), reason=doc.get("reason", ""), message=doc.get("message", ""),
                          starts_at=datetime.fromisoformat(doc["starts_at"]) if doc.get("starts_at") else None,
                          ends_at=datetime.fromisoformat(doc["ends_at"]) if doc.get("ends_at") else None)
        except (MaintenanceAgentError, ValueError, KeyError, TypeError) as exc:
            self.log.warning("cannot read the window an end notice speaks of; sending it without", error=str(exc))
            return None

    def _send_end(self, closing: Intent) -> None:
        self.send(self.notice("end", closing, self.window_before(closing)))

    def resume(self) -> list[Future[Delivery | None]]:
        """Finish deliveries this sender claimed but did not finish (it was stopped or crashed)."""
        try:
            keys = self.gateway.list_prefix(self.prefix + "/")
        except MaintenanceAgentError as exc:
            self.log.warning("cannot list notice deliveries to resume", error=str(exc))
            return []
        futures: list[Future[Delivery | None]] = []
        for key, read in keys.items():
            try:
                delivery = Delivery.from_json(read.value or b"")
            except (ValueError, TypeError, KeyError):
                continue
            if delivery.claimed_by != self.sender_name or delivery.state != "sending" or delivery.channel not in CHANNELS:
                continue
            self.log.info("resuming a notice delivery", notice=delivery.notice_id, partner=delivery.partner, channel=delivery.channel,
                          attempts=len(delivery.attempts))
            futures.append(self._pools[delivery.channel].submit(self._deliver, key, delivery))
        return futures

    def stop(self) -> None:
        self._stop.set()
        self._window_line.shutdown(wait=False, cancel_futures=True)
        for pool in self._pools.values():
            pool.shutdown(wait=False, cancel_futures=True)

    # -- one recipient -------------------------------------------------------------

    def _claim_and_deliver(self, partner: PartnerSection, channel: str, notice: Notice) -> Delivery | None:
        try:
            if channel == "email":
                body, to = compose(notice, partner, self.section, self.calendar.entry_for(notice)), "mailto:" + ",".join(partner.email)
            else:
                body, to = notice.body().decode(), partner.url or ""
        except MaintenanceAgentError as exc:
            self.log.error("cannot prepare a partner notice; not sent", notice=notice.id, partner=partner.name, channel=channel, error=str(exc))
            return None
        return self._claim(Delivery(notice_id=notice.id, event=notice.event, partner=partner.name, url=to, claimed_by=self.sender_name,
                                    claimed_at=self.clock().isoformat(), body=body, channel=channel), f"{notice.intent_index}-{notice.event}")

    def _claim_and_post(self, event_id: str, event: str, text: str) -> Delivery | None:
        assert self.section.chat is not None
        try:
            to = where(self.section.chat.resolved_url())
        except OSError as exc:
            to = f"chat:? ({exc.strerror})"
        return self._claim(Delivery(notice_id=f"{self.environment}-{event_id}", event=event, partner=TEAM, url=to, claimed_by=self.sender_name,
                                    claimed_at=self.clock().isoformat(), body=payload(text), channel="chat"), event_id)

    def _claim(self, delivery: Delivery, event_id: str) -> Delivery | None:
        key = self.key(event_id, delivery.partner, delivery.channel)
        try:
            claimed = self.gateway.put_key(key, delivery.to_json(), cas=0)
        except MaintenanceAgentError as exc:
            self.log.error("cannot claim a notice; not sent", notice=delivery.notice_id, partner=delivery.partner, channel=delivery.channel,
                           error=str(exc))
            return None
        if not claimed:
            self.log.info("notice already claimed by another sender", notice=delivery.notice_id, partner=delivery.partner,
                          channel=delivery.channel)
            return None
        return self._deliver(key, delivery)

    def _deliver(self, key: str, delivery: Delivery) -> Delivery:
        def record(current: Delivery) -> bool:
            try:
                self.gateway.put_key(key, current.to_json())
                return True
            except MaintenanceAgentError as exc:
                self.log.warning("cannot record a notice attempt", notice=current.notice_id, partner=current.partner, error=str(exc))
                return False

        result = self._send(delivery, record)
        last = result.last
        log = self.log.info if result.state == "delivered" else self.log.error if result.state == "failed" else self.log.warning
        log("notice " + result.state, notice=result.notice_id, partner=result.partner, channel=result.channel, attempts=len(result.attempts),
            status=last.status if last else None, error=last.error if last else None)
        return result

    def _send(self, delivery: Delivery, record: Callable[[Delivery], bool]) -> Delivery:
        partner = next((p for p in self.section.partners if p.name == delivery.partner), None)
        if delivery.channel == "chat" and self._chat is not None:
            return self._chat.deliver(delivery, record)
        if delivery.channel == "email" and self._mail is not None and partner is not None and partner.email:
            return self._mail.deliver(delivery, [mailbox(a) for a in partner.email], record)
        if delivery.channel == "webhook" and partner is not None:
            try:
                secret = partner.resolved_secret()
            except OSError as exc:
                self.log.error("cannot read a partner's secret; notice not sent", partner=partner.name, error=str(exc))
                delivery.state = "failed"
                record(delivery)
                return delivery
            return self._webhooks.deliver(delivery, secret, record)
        self.log.error("no configuration left for this notice's channel; given up", notice=delivery.notice_id, partner=delivery.partner,
                       channel=delivery.channel)
        delivery.state = "failed"
        record(delivery)
        return delivery
