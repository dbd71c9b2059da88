"""Configuration: one TOML file validated into frozen models, all problems at once.

``load(path)`` returns an ``AgentConfig`` or raises ``ConfigError`` naming the
file and, for every problem, its dotted key path and what was expected. The
same function backs ``maintenance-agent check-config`` and every start.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import tomllib
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agent.errors import ConfigError
from agent.model import DEFAULT_ORDER, Role


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _host_port(value: str, what: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"expected {what} as host:port (e.g. 127.0.0.1:9464)")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        labels = host.split(".")
        if all(label.isdigit() for label in labels):
            raise ValueError(f"{host!r} is not a valid IP address") from None
        if not all(label and label.replace("-", "").isalnum() for label in labels):
            raise ValueError(f"{host!r} is neither an IP address nor a host name") from None
    return value


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an http(s) URL")
    return value


HttpUrlText = Annotated[str, AfterValidator(_http_url)]
"""An http(s) URL kept as the text the operator wrote."""


class AgentSection(_Model):
    node: str = Field(default_factory=socket.gethostname, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    roles: Annotated[list[Role], Field(min_length=1)]
    environment: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_\-]*$")
    state_dir: Path = Path("/var/lib/maintenance-agent")
    order: list[Role] = Field(default_factory=lambda: list(DEFAULT_ORDER))
    resync_seconds: float = Field(default=30.0, gt=0, le=3600)
    retry_max_seconds: float = Field(default=30.0, gt=0, le=3600)

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


class ConsulSection(_Model):
    address: str = "http://127.0.0.1:8500"
    token: str | None = None
    token_file: Path | None = None
    prefix: str = Field(default="maintenance", pattern=r"^[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-]+)*$")
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    tls_verify: bool = True
    wait_seconds: int = Field(default=60, ge=1, le=300, description="blocking query wait; bounded, see DESIGN")
    session_ttl_seconds: int = Field(default=15, ge=10, le=3600)
    request_timeout_seconds: float = Field(default=5.0, gt=0, le=120)

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        parts = urlsplit(value if "://" in value else f"http://{value}")
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
            raise ValueError("expected http(s)://host:port")
        try:
            port = parts.port
        except ValueError:
            raise ValueError("expected a port number between 1 and 65535") from None
        _host_port(f"{parts.hostname}:{port or 8500}", "the Consul address")
        return value

    @model_validator(mode="after")
    def _token_sources(self) -> ConsulSection:
        if self.token and self.token_file:
            raise ValueError("set either token or token_file, not both")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self

    def resolved_token(self) -> str | None:
        """The token to use: config ``token``, else ``token_file``, else ``CONSUL_HTTP_TOKEN``.

        The config wins over the environment on purpose (py-consul does the
        opposite): a box's file is the deliberate choice.
        """
        if self.token:
            return self.token
        if self.token_file:
            return self.token_file.read_text().strip() or None
        return os.environ.get("CONSUL_HTTP_TOKEN") or None


class MetricsSection(_Model):
    listen: str = "127.0.0.1:9464"

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        return _host_port(value, "the metrics listen address")


class LogSection(_Model):
    format: Literal["auto", "json", "console"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"


class SmokeCheck(_Model):
    name: str = Field(min_length=1)
    url: HttpUrlText
    expect_status: int = Field(default=200, ge=100, le=599)
    expect_body: str | None = None
    timeout_seconds: float = Field(default=5.0, gt=0, le=120)
    max_latency_seconds: float | None = Field(default=None, gt=0)
    headers: dict[str, str] = Field(default_factory=dict)



class WebSection(_Model):
    smoke: list[SmokeCheck] = Field(default_factory=list)
    smoke_attempts: int = Field(default=1, ge=1, le=20)


class HooksSection(_Model):
    dir: Path | None = None
    timeout_seconds: float = Field(default=60.0, gt=0, le=3600)


BackendKind = Literal["systemd", "supervisor", "command"]


class SupervisorConnection(_Model):
    """Where supervisord's XML-RPC API listens ([unix_http_server] or [inet_http_server])."""

    url: str = "unix:///var/run/supervisor.sock"
    username: str | None = None
    password: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme == "unix" and parts.path.startswith("/") and not parts.netloc:
            return value
        if parts.scheme in ("http", "https") and parts.hostname:
            return value
        raise ValueError("expected unix:///path/to/supervisor.sock or http://host:port")

    @model_validator(mode="after")
    def _credentials(self) -> SupervisorConnection:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        return self


class ServiceCommands(_Model):
    """Shell commands (run by /bin/sh) that drive one service for the command backend.

    ``status`` exits 0 while the service runs and with one of the role's
    ``inactive_exit_codes`` while it is stopped; any other exit is an error.
    ``is_enabled``/``disable``/``enable`` come together or not at all, like
    ``running``/``stop_running`` (a job: exits 0 while a run is in progress).
    """

    stop: str = Field(min_length=1)
    start: str = Field(min_length=1)
    status: str = Field(min_length=1)
    is_enabled: str | None = None
    disable: str | None = None
    enable: str | None = None
    running: str | None = None
    stop_running: str | None = None

    @model_validator(mode="after")
    def _groups_complete(self) -> ServiceCommands:
        trio = (self.is_enabled, self.disable, self.enable)
        if any(trio) and not all(trio):
            raise ValueError("is_enabled, disable and enable go together")
        if self.stop_running and not self.running:
            raise ValueError("stop_running needs a running command")
        return self


class _ServiceManagerTable(_Model):
    backend: BackendKind
    timeout_seconds: float = Field(default=60.0, gt=0, le=3600, description="limit of each systemctl / XML-RPC / command call")
    systemctl: str = "systemctl"
    supervisor: SupervisorConnection = SupervisorConnection()
    commands: dict[str, ServiceCommands] = Field(default_factory=dict)
    inactive_exit_codes: list[int] = Field(default_factory=lambda: [1, 2, 3])

    def _check_commands(self, names: list[str], what: str) -> None:
        if len(set(names)) != len(names):
            raise ValueError(f"a name is listed twice in {what}")
        if self.backend != "command":
            if self.commands:
                raise ValueError(f"commands are only used with backend = \"command\" (backend is {self.backend!r})")
            return
        missing = [n for n in names if n not in self.commands]
        unused = sorted(set(self.commands) - set(names))
        if missing:
            raise ValueError(f"backend \"command\" needs a commands table for {', '.join(missing)}")
        if unused:
            raise ValueError(f"commands for {', '.join(unused)} which {what} does not list")


class WorkerSection(_ServiceManagerTable):
    """The worker role: services to stop for the window and start again afterwards."""

    services: Annotated[list[str], Field(min_length=1)]

    @model_validator(mode="after")
    def _commands_match(self) -> WorkerSection:
        self._check_commands(self.services, "services")
        return self


class SchedulerSection(_ServiceManagerTable):
    """The scheduler role: jobs to disable, with a bounded drain of running ones."""

    jobs: Annotated[list[str], Field(min_length=1)]
    drain_timeout_seconds: float = Field(default=600.0, ge=0, le=24 * 3600)
    drain_poll_seconds: float = Field(default=5.0, gt=0, le=600)
    on_drain_timeout: Literal["stop", "wait"] = "stop"

    @model_validator(mode="after")
    def _commands_match(self) -> SchedulerSection:
        self._check_commands(self.jobs, "jobs")
        if self.backend == "command" and self.on_drain_timeout == "stop":
            unstoppable = [n for n, c in self.commands.items() if c.running and not c.stop_running]
            if unstoppable:
                raise ValueError(f"on_drain_timeout = \"stop\" needs stop_running for {', '.join(sorted(unstoppable))}")
        return self


class EdgeSection(_Model):
    """The edge role: HAProxy's admin socket, the maintenance map, and how to verify the switch.

    ``verify_maintenance`` / ``verify_active`` request the *public* frontend
    (from an address that is not in HAProxy's internal allowlist) and must see
    the maintenance answers, resp. the normal ones, before the box reports the
    new state. Both lists are required: an unverified switch is not a switch.
    """

    admin_socket: Path = Path("/run/haproxy/admin.sock")
    map_file: Path = Path("/etc/haproxy/maintenance/maintenance.map")
    socket_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    default_message: str = Field(default="We are doing planned maintenance and will be back shortly.", min_length=1, max_length=500)
    message_max_chars: int = Field(default=500, ge=20, le=2000)
    default_retry_after_seconds: int = Field(default=900, ge=1, le=86400)
    min_retry_after_seconds: int = Field(default=60, ge=1, le=86400)
    max_retry_after_seconds: int = Field(default=3600, ge=1, le=86400)
    verify_maintenance: Annotated[list[SmokeCheck], Field(min_length=1)]
    verify_active: Annotated[list[SmokeCheck], Field(min_length=1)]
    verify_attempts: int = Field(default=3, ge=1, le=20)
    verify_interval_seconds: float = Field(default=0.5, ge=0, le=60)

    @model_validator(mode="after")
    def _retry_bounds(self) -> EdgeSection:
        low, default, high = self.min_retry_after_seconds, self.default_retry_after_seconds, self.max_retry_after_seconds
        if not low <= default <= high:
            raise ValueError(
                f"expected min_retry_after_seconds <= default_retry_after_seconds <= max_retry_after_seconds (got {low}, {default}, {high})"
            )
        return self

NoticeEvent = Literal["announce", "on", "off", "start", "end"]
ALL_NOTICE_EVENTS: tuple[str, ...] = ("announce", "on", "off", "start", "end")


class PartnerSection(_Model):
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


class NoticesSection(_Model):
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


class AlertmanagerMatcher(_Model):
    name: str = Field(min_length=1)
    value: str
    is_regex: bool = False
    is_equal: bool = True


class AlertmanagerSection(_Model):
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


class AgentConfig(_Model):
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

    @model_validator(mode="after")
    def _role_tables(self) -> AgentConfig:
        for role in self.agent.roles:
            if role.value in type(self).model_fields and getattr(self, role.value) is None and role is not Role.WEB:
                raise ValueError(f"role {role.value!r} is listed in agent.roles but there is no [{role.value}] table")
        return self

    @property
    def env_prefix(self) -> str:
        return f"{self.consul.prefix}/{self.agent.environment}"


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


def from_mapping(doc: dict, source: str = "<config>") -> AgentConfig:
    try:
        config = AgentConfig.model_validate(doc)
    except ValidationError as exc:
        raise ConfigError(source, [_describe(err) for err in exc.errors()]) from None
    if config.consul.token_file and not config.consul.token_file.is_file():
        raise ConfigError(source, [f"consul.token_file: {config.consul.token_file} does not exist or is not a file"])
    return config


def _describe(err: dict) -> str:
    path = ".".join(str(p) for p in err["loc"]) or "(top level)"
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"{path}: unknown key"
    if kind == "missing":
        return f"{path}: required key is missing"
    if kind == "enum":
        expected = err.get("ctx", {}).get("expected", "")
        return f"{path}: {err['input']!r} is not one of {expected}"
    message = err["msg"].removeprefix("Value error, ")
    shown = repr(err.get("input"))
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{path}: {message} (got {shown})"
