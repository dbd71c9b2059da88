"""The tables of those told about a window: [notices] (partners' webhooks and email, the team's chat) and [alertmanager].

A partner is told the way it reads: a signed webhook (``url``), email with a
calendar invitation (``email``), or both. Email goes through the team's SMTP
relay ([notices.smtp]); the team's own channel is a chat incoming webhook
([notices.chat]). A mistake names the partner, not its position in the list
(``notices.partners[acme].email``, see ``name_partners``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from email.utils import parseaddr
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    field_validator,
    model_validator,
)

from agent.config.fields import FrozenModel, HttpUrlText
from agent.config.methods import ChatMethods, PartnerMethods, SmtpMethods

NoticeEvent = Literal["announce", "on", "off", "start", "end"]
ALL_NOTICE_EVENTS: tuple[NoticeEvent, ...] = ("announce", "on", "off", "start", "end")
ChatEvent = Literal["announce", "on", "off", "start", "end", "blocked", "overrun"]
ALL_CHAT_EVENTS: tuple[ChatEvent, ...] = ("announce", "on", "off", "start", "end", "blocked", "overrun")

_LOCAL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")


def _address(value: str) -> str:
    """One mailbox, ``noc@acme.example`` or ``Acme NOC <noc@acme.example>``; kept as written."""
    if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
        raise ValueError("expected an email address like noc@acme.example")
    _, addr = parseaddr(value)
    local, _, domain = addr.rpartition("@")
    if not (local and _LOCAL.match(local) and ".." not in local and _DOMAIN.match(domain)):
        raise ValueError(f"{value!r} is not an email address like noc@acme.example")
    return value


EmailAddress = Annotated[str, AfterValidator(_address)]


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not a time zone name like Europe/Zurich or UTC") from None
    return value


class PartnerSection(PartnerMethods, FrozenModel):
    """One partner told about windows: by signed webhook (url + secret), by email, or both; which events it wants."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    url: HttpUrlText | None = None
    secret: str | None = Field(default=None, min_length=16)
    secret_file: Path | None = None
    email: Annotated[list[EmailAddress], BeforeValidator(_one_or_many), Field(max_length=20)] = Field(default_factory=list)
    timezone: Annotated[str, AfterValidator(_zone)] = "UTC"
    events: list[NoticeEvent] = Field(default_factory=lambda: list(ALL_NOTICE_EVENTS))

    @model_validator(mode="after")
    def _channels(self) -> PartnerSection:
        if self.url is None and not self.email:
            raise ValueError("set url (a signed webhook) and/or email (notices with a calendar invitation)")
        if self.url is None:
            if self.secret is not None or self.secret_file is not None:
                raise ValueError("secret and secret_file sign webhooks: they need url")
            return self
        if (self.secret is None) == (self.secret_file is None):
            raise ValueError("a webhook (url) needs exactly one of secret or secret_file")
        if self.secret_file is not None and not self.secret_file.is_file():
            raise ValueError(f"secret_file {self.secret_file} does not exist or is not a file")
        return self


class SmtpSection(SmtpMethods, FrozenModel):
    """The team's SMTP relay: STARTTLS, and authentication whose password is read from a file at each send, never logged."""

    host: str = Field(min_length=1, max_length=253)
    port: int = Field(default=587, ge=1, le=65535)
    starttls: bool = True
    username: str | None = Field(default=None, min_length=1)
    password_file: Path | None = None
    ca_file: Path | None = None
    sender: EmailAddress
    reply_to: EmailAddress | None = None
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)

    @model_validator(mode="after")
    def _auth(self) -> SmtpSection:
        if (self.username is None) != (self.password_file is None):
            raise ValueError("username and password_file go together")
        if self.username is not None and not self.starttls:
            raise ValueError("authentication needs starttls = true (a password is never sent in clear text)")
        for name in ("password_file", "ca_file"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{name} {path} does not exist or is not a file")
        return self


class ChatSection(ChatMethods, FrozenModel):
    """The team's own channel: a Slack-compatible incoming webhook (its URL is a secret: ``url_file`` keeps it out of the config)."""

    url: HttpUrlText | None = None
    url_file: Path | None = None
    events: list[ChatEvent] = Field(default_factory=lambda: list(ALL_CHAT_EVENTS))
    blocked_after_seconds: float = Field(default=60.0, ge=0, le=3600, description="a box blocked this long in a transition is "
                                         "told to the channel (once per box and intent)")
    timeout_seconds: float = Field(default=5.0, gt=0, le=60)

    @model_validator(mode="after")
    def _one_url(self) -> ChatSection:
        if (self.url is None) == (self.url_file is None):
            raise ValueError("set exactly one of url or url_file")
        if self.url_file is not None and not self.url_file.is_file():
            raise ValueError(f"url_file {self.url_file} does not exist or is not a file")
        return self


class NoticesSection(FrozenModel):
    """Partner notices (signed webhooks, email with a calendar invitation) and the team's chat.

    Edge agents send ``start``/``end`` (each claimed once per partner and
    channel in Consul); ``maintctl`` sends ``announce`` and, with this table in
    its ``--notices`` file, ``on``/``off``.
    """

    partners: list[PartnerSection] = Field(default_factory=list)
    timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    attempts: int = Field(default=6, ge=1, le=20)
    backoff_seconds: float = Field(default=2.0, ge=0, le=600)
    backoff_max_seconds: float = Field(default=120.0, ge=0, le=3600)
    api_impact: str = Field(default="API requests are answered with HTTP 503 and a Retry-After header (seconds until the "
                                    "announced end); the UI shows a maintenance page.", min_length=1, max_length=1000)
    calendar_domain: str = Field(default="maintenance-agent", min_length=1, max_length=200, pattern=r"^[A-Za-z0-9.\-]+$")
    contact: str = Field(default="", max_length=300, description="whom a partner calls during a window (email notices)")
    service: str = Field(default="our API", min_length=1, max_length=100, description="what the notices call the service")
    smtp: SmtpSection | None = None
    chat: ChatSection | None = None

    @field_validator("partners")
    @classmethod
    def _unique_names(cls, partners: list[PartnerSection]) -> list[PartnerSection]:
        names = [p.name for p in partners]
        if len(set(names)) != len(names):
            raise ValueError("a partner name is listed twice")
        return partners

    @model_validator(mode="after")
    def _email_needs_relay(self) -> NoticesSection:
        mailed = [p.name for p in self.partners if p.email]
        if mailed and self.smtp is None:
            raise ValueError(f"partners with email ({', '.join(mailed)}) need a [notices.smtp] table (the relay to send through)")
        if mailed and not self.contact.strip():
            raise ValueError(f"partners with email ({', '.join(mailed)}) need contact: whom they call during a window")
        return self


def name_partners(loc: Sequence[int | str], doc: Mapping[str, Any], base: Sequence[str] = ("notices",)) -> str:
    """A dotted key path where ``notices.partners.<n>`` reads ``notices.partners[<name>]`` when that entry has a name."""
    parts = [str(p) for p in loc]
    head = list(base) + ["partners"]
    n = len(head)
    if parts[:n] == head and len(parts) > n and parts[n].isdigit():
        table: Any = doc
        for key in base:
            table = table.get(key, {}) if isinstance(table, Mapping) else {}
        entries = table.get("partners") if isinstance(table, Mapping) else None
        index = int(parts[n])
        entry = entries[index] if isinstance(entries, list) and index < len(entries) else None
        name = entry.get("name") if isinstance(entry, Mapping) else None
        if isinstance(name, str) and name:
            return ".".join(head) + f"[{name}]" + "".join(f".{p}" for p in parts[n + 1:])
    return ".".join(parts)


class AlertmanagerMatcher(FrozenModel):
    name: str = Field(min_length=1)
    value: str
    is_regex: bool = False
    is_equal: bool = True


class AlertmanagerSection(FrozenModel):
    """Silence the alerts a window is expected to fire, as a lease that expires unless extended.

    Edge agents hold it (first in, last out): created when the edge starts
    entering, extended every ``renew_seconds`` while the box is not back to
    active, deleted when it is; a silence nobody extends ends ``lease_seconds``
    later on its own. Matchers get ``env = <environment>`` added unless given.
    """

    url: HttpUrlText
    lease_seconds: int = Field(default=900, ge=60, le=6 * 3600)
    renew_seconds: float = Field(default=60.0, gt=0, le=3600)
    timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    matchers: list[AlertmanagerMatcher] = Field(default_factory=lambda: [AlertmanagerMatcher(
        name="alertname", value="HAProxyBackendDown|WorkerStopped|JobStale|ScheduledJobStale", is_regex=True)])
    created_by: str = "maintenance-agent"

    @field_validator("url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @model_validator(mode="after")
    def _renew_within_lease(self) -> AlertmanagerSection:
        if self.renew_seconds * 2 > self.lease_seconds:
            raise ValueError("renew_seconds must be at most half of lease_seconds (a missed renewal must not end the silence)")
        return self
