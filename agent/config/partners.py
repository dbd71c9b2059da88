"""The tables of those told about a window: [notices] (partners' webhooks) and [alertmanager]."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from agent.config.fields import FrozenModel, HttpUrlText

NoticeEvent = Literal["announce", "on", "off", "start", "end"]
ALL_NOTICE_EVENTS: tuple[NoticeEvent, ...] = ("announce", "on", "off", "start", "end")


class PartnerSection(FrozenModel):
    """One partner told about windows: where its webhook is, its signing secret, which events it wants."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    url: HttpUrlText
    secret: str | None = Field(default=None, min_length=16)
    secret_file: Path | None = None
    events: list[NoticeEvent] = Field(default_factory=lambda: list(ALL_NOTICE_EVENTS))


    @model_validator(mode="after")
    def _one_secret(self) -> PartnerSection:
        if (self.secret is None) == (self.secret_file is None):
            raise ValueError("set exactly one of secret or secret_file")
        if self.secret_file is not None and not self.secret_file.is_file():
            raise ValueError(f"secret_file {self.secret_file} does not exist or is not a file")
        return self

    def resolved_secret(self) -> bytes:
        if self.secret is not None:
            return self.secret.encode()
        assert self.secret_file is not None
        return self.secret_file.read_text().strip().encode()


class NoticesSection(FrozenModel):
    """Partner notices: signed webhooks (and the window's .ics) on announce, on/off, actual start and end.

    Edge agents send ``start``/``end`` (each claimed once per partner in
    Consul); ``maintctl`` sends ``announce`` and, with this table in its
    ``--notices`` file, ``on``/``off``.
    """

    partners: list[PartnerSection] = Field(default_factory=list)
    timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    attempts: int = Field(default=6, ge=1, le=20)
    backoff_seconds: float = Field(default=2.0, ge=0, le=600)
    backoff_max_seconds: float = Field(default=120.0, ge=0, le=3600)
    api_impact: str = Field(default="API requests are answered with HTTP 503 and a Retry-After header (seconds until the "
                                    "announced end); the UI shows a maintenance page.", min_length=1, max_length=1000)
    calendar_domain: str = Field(default="maintenance-agent", min_length=1, max_length=200, pattern=r"^[A-Za-z0-9.\-]+$")

    @field_validator("partners")
    @classmethod
    def _unique_names(cls, partners: list[PartnerSection]) -> list[PartnerSection]:
        names = [p.name for p in partners]
        if len(set(names)) != len(names):
            raise ValueError("a partner name is listed twice")
        return partners


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
