"""Configuration: one TOML file validated into frozen models, all problems at once.

``load(path)`` returns an ``AgentConfig`` or raises ``ConfigError`` naming the
file and, for every problem, its dotted key path and what was expected. The
same function backs ``maintenance-agent check-config`` and every start. The
role tables live in ``roles``, the partners' in ``partners``.
"""

from __future__ import annotations

import socket
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from agent.config.alerts import AlertGateSection
from agent.config.connection import ConnectionSettingError, normalise_address
from agent.config.fields import BoxPath, FrozenModel, host_port
from agent.config.methods import AgentConfigMethods, AgentSectionMethods, ConsulSectionMethods
from agent.config.partners import AlertmanagerSection, NoticesSection, name_partners
from agent.config.roles import (
    EdgeSection,
    HooksSection,
    SchedulerSection,
    WebSection,
    WorkerSection,
)
from agent.core.errors import ConfigError
from agent.core.model import DEFAULT_ORDER, Role


class AgentSection(AgentSectionMethods, FrozenModel):
    node: str = Field(default_factory=socket.gethostname, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    roles: Annotated[list[Role], Field(min_length=1)]
    environment: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_\-]*$")
    state_dir: BoxPath = Path("/var/lib/maintenance-agent")
    order: list[Role] = Field(default_factory=lambda: list(DEFAULT_ORDER))
    resync_seconds: float = Field(default=30.0, gt=0, le=3600)
    retry_max_seconds: float = Field(default=30.0, gt=0, le=3600)
    drift_check_seconds: float = Field(default=2.0, gt=0, le=60, description="how often a settled box looks at its local steps "
                                       "(HAProxy map, service manager, flag file) for drift; costs Consul nothing")

    @field_validator("roles")
    @classmethod
    def _no_duplicate_roles(cls, roles: list[Role]) -> list[Role]:
        if len(set(roles)) != len(roles):
            raise ValueError("a role is listed twice")
        return roles

    @field_validator("order")
    @classmethod
    def _order_is_a_sequence(cls, order: list[Role]) -> list[Role]:
        # A list cannot express a cycle except by naming a role twice.
        if len(set(order)) != len(order):
            raise ValueError("the order names a role twice (a cycle): each role must appear once")
        missing = set(Role) - set(order)
        if missing:
            raise ValueError(f"the order must name every role; missing {', '.join(sorted(r.value for r in missing))}")
        return order


class ConsulSection(ConsulSectionMethods, FrozenModel):
    """How this box reaches Consul. Unset keys fall back to the ``consul`` command line's
    ``CONSUL_*`` environment variables (``agent.config.connection``), then to the defaults."""

    address: str | None = Field(default=None, description="default CONSUL_HTTP_ADDR, else http://127.0.0.1:8500")
    token: str | None = None
    token_file: Path | None = None
    prefix: str = Field(default="maintenance", pattern=r"^[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-]+)*$")
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    tls_server_name: str | None = Field(default=None, min_length=1, max_length=253)
    tls_verify: bool | None = Field(default=None, description="default CONSUL_HTTP_SSL_VERIFY, else true")
    wait_seconds: int = Field(default=60, ge=1, le=300, description="blocking query wait; bounded, see DESIGN")
    session_ttl_seconds: int = Field(default=15, ge=10, le=3600)
    request_timeout_seconds: float = Field(default=5.0, gt=0, le=120)

    @field_validator("address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        normalise_address(value)
        return value

    @model_validator(mode="after")
    def _token_sources(self) -> ConsulSection:
        if self.token and self.token_file:
            raise ValueError("set either token or token_file, not both")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class MetricsSection(FrozenModel):
    listen: str = "127.0.0.1:9464"

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        return host_port(value, "the metrics listen address")


class LogSection(FrozenModel):
    #: auto: journald's native fields under systemd, JSON lines off a terminal, readable lines on one.
    format: Literal["auto", "journal", "json", "console"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"


class AgentConfig(AgentConfigMethods, FrozenModel):
    agent: AgentSection
    consul: ConsulSection = ConsulSection()
    metrics: MetricsSection = MetricsSection()
    log: LogSection = LogSection()
    web: WebSection | None = None
    worker: WorkerSection | None = None
    scheduler: SchedulerSection | None = None
    edge: EdgeSection | None = None
    hooks: HooksSection = HooksSection()
    notices: NoticesSection = NoticesSection()
    alertmanager: AlertmanagerSection | None = None
    alert_gate: AlertGateSection | None = None

    @model_validator(mode="after")
    def _role_tables(self) -> AgentConfig:
        for role in self.agent.roles:
            if role.value in type(self).model_fields and getattr(self, role.value) is None and role is not Role.WEB:
                raise ValueError(f"role {role.value!r} is listed in agent.roles but there is no [{role.value}] table")
        return self


def load(path: str | Path) -> AgentConfig:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read the file: {exc.strerror}"]) from None
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), [f"not UTF-8 text (byte {exc.start})"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [f"not valid TOML: {exc}"]) from None
    return from_mapping(doc, source=str(path))


def from_mapping(doc: Mapping[str, Any], source: str = "<config>") -> AgentConfig:
    try:
        config = AgentConfig.model_validate(doc)
    except ValidationError as exc:
        raise ConfigError(source, [_describe(err, doc) for err in exc.errors()]) from None
    try:
        config.consul.connection()
    except ConnectionSettingError as exc:
        raise ConfigError(source, [str(exc)]) from None
    return config


def _describe(err: ErrorDetails, doc: Mapping[str, Any]) -> str:
    path = name_partners(err["loc"], doc) or "(top level)"
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"{path}: unknown key"
    if kind == "missing":
        return f"{path}: required key is missing"
    if kind == "enum":
        expected = err.get("ctx", {}).get("expected", "")
        return f"{path}: {err['input']!r} is not one of {expected}"
    message = err["msg"].removeprefix("Value error, ")
    if isinstance(err.get("input"), Mapping) or _is_secret(err["loc"]):
        return f"{path}: {message}"  # a whole table (its secrets with it), or a secret: never echoed
    shown = repr(err.get("input"))
    if shown in message:  # the validator already quoted what it got
        return f"{path}: {message}"
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{path}: {message} (got {shown})"


_SECRET_KEYS = frozenset({"secret", "token", "password"})


def _is_secret(loc: tuple[int | str, ...]) -> bool:
    """Whether an error's key holds a secret: a webhook's signing key, a token, a password, the team chat's URL."""
    names = [str(part) for part in loc]
    return bool(names) and (names[-1] in _SECRET_KEYS or names[-2:] == ["chat", "url"])
