"""What the config tables compute from their keys, in classes without pydantic.

Each validated table (``schema``, ``roles``, ``partners``) inherits its
methods from here, and so does its plain copy (``plain``), the only form the
running daemon holds: one definition serves ``check-config`` and the daemon,
which never imports pydantic (about 13 MB of an idle agent's memory). The
attributes each class reads are declared for the type checker only; pydantic
sees no annotation here and takes every field from the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from email.utils import parseaddr
from pathlib import Path
from typing import TYPE_CHECKING

from agent.config.connection import ConsulConnection, resolve
from agent.core.model import Role

if TYPE_CHECKING:
    from agent.config.alerts import AlertGateSection
    from agent.config.schema import AgentSection, ConsulSection


def mailbox(address: str) -> str:
    """The bare address of ``Acme NOC <noc@acme.example>`` (what the SMTP envelope and the invitation's ATTENDEE name)."""
    return parseaddr(address)[1]


class AgentSectionMethods:
    if TYPE_CHECKING:
        state_dir: Path

    @property
    def holds_dir(self) -> Path:
        """Where the worker and scheduler backends keep hold markers; the box's hold drop-ins name it."""
        return self.state_dir / "holds"


class ConsulSectionMethods:
    if TYPE_CHECKING:
        address: str | None
        token: str | None
        token_file: Path | None
        ca_file: Path | None
        cert_file: Path | None
        key_file: Path | None
        tls_server_name: str | None
        tls_verify: bool | None

    def connection(self, environ: Mapping[str, str] | None = None) -> ConsulConnection:
        """Address, token and TLS resolved: this table first, then ``CONSUL_*``, then defaults.

        The config wins over the environment on purpose (py-consul does the
        opposite for the token): a box's file is the deliberate choice.
        Raises ``ConnectionSettingError`` (one line) for a bad value.
        """
        return resolve(address=self.address, token=self.token, token_file=self.token_file, ca_file=self.ca_file,
                       cert_file=self.cert_file, key_file=self.key_file, tls_server_name=self.tls_server_name,
                       verify=self.tls_verify, environ=environ)

    def resolved_token(self) -> str | None:
        """The token to use: config ``token``, else ``token_file``, else ``CONSUL_HTTP_TOKEN_FILE``, else ``CONSUL_HTTP_TOKEN``."""
        return self.connection().token


class AgentConfigMethods:
    if TYPE_CHECKING:
        agent: AgentSection
        consul: ConsulSection
        alert_gate: AlertGateSection | None

    def gated_roles(self) -> list[Role]:
        """The roles of this box that ask the alert gate before traffic comes back."""
        if self.alert_gate is None:
            return []
        return [r for r in self.agent.roles if r.value in self.alert_gate.roles]

    @property
    def env_prefix(self) -> str:
        return f"{self.consul.prefix}/{self.agent.environment}"


class PartnerMethods:
    if TYPE_CHECKING:
        url: str | None
        secret: str | None
        secret_file: Path | None
        email: list[str]

    def channels(self) -> list[str]:
        """How this partner is told: ``webhook``, ``email``, or both."""
        return [c for c, on in (("webhook", self.url is not None), ("email", bool(self.email))) if on]

    def resolved_secret(self) -> bytes:
        if self.secret is not None:
            return self.secret.encode()
        assert self.secret_file is not None
        return self.secret_file.read_text().strip().encode()


class SmtpMethods:
    if TYPE_CHECKING:
        password_file: Path | None

    def password(self) -> str:
        assert self.password_file is not None
        return self.password_file.read_text().strip()


class ChatMethods:
    if TYPE_CHECKING:
        url: str | None
        url_file: Path | None

    def resolved_url(self) -> str:
        if self.url is not None:
            return self.url
        assert self.url_file is not None
        return self.url_file.read_text().strip()
