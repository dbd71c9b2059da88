"""The tables of the roles: [web], [worker], [scheduler], [edge], [hooks]."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from agent.config.fields import BoxPath, FrozenModel, HttpUrlText
from agent.core.holds import systemd_name_problem


class SmokeCheck(FrozenModel):
    name: str = Field(min_length=1)
    url: HttpUrlText
    expect_status: int = Field(default=200, ge=100, le=599)
    expect_body: str | None = None
    timeout_seconds: float = Field(default=5.0, gt=0, le=120)
    max_latency_seconds: float | None = Field(default=None, gt=0)
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("expect_body")
    @classmethod
    def _marker(cls, value: str | None) -> str | None:
        if value == "":
            raise ValueError("expected a text the body must contain (an empty one is in every body), or no expect_body")
        return value


class WebSection(FrozenModel):
    smoke: list[SmokeCheck] = Field(default_factory=list)
    smoke_attempts: int = Field(default=1, ge=1, le=20)


class HooksSection(FrozenModel):
    dir: Path | None = None
    timeout_seconds: float = Field(default=60.0, gt=0, le=3600)


BackendKind = Literal["systemd", "supervisor", "command"]


class SupervisorConnection(FrozenModel):
    """Where supervisord's XML-RPC API listens ([unix_http_server] or [inet_http_server])."""

    url: str = "unix:///var/run/supervisor.sock"
    username: str | None = None
    password: str | None = None
    #: Refuse to hold a program unless supervisor.service's start hook (written by install-files) ran since boot,
    #: since only that hook keeps held programs down when supervisord starts again. False for a supervisord that
    #: systemd does not start.
    holds_check: bool = True

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


class ServiceCommands(FrozenModel):
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


class _ServiceManagerTable(FrozenModel):
    backend: BackendKind
    timeout_seconds: float = Field(default=60.0, gt=0, le=3600, description="limit of each systemctl / XML-RPC / command call")
    systemctl: str = "systemctl"
    supervisor: SupervisorConnection = SupervisorConnection()
    commands: dict[str, ServiceCommands] = Field(default_factory=dict)
    inactive_exit_codes: list[int] = Field(default_factory=lambda: [1, 2, 3])
    #: What a settled box does when the role no longer holds (a service started by hand in the window):
    #: "repair" puts it back (logged, counted), "report" leaves it and shows it in the status.
    drift: Literal["repair", "report"] = "repair"
    #: After a window, how long what ran before it is held running (restarted if it stops); 0: not at all.
    #: Bounded so that an operator stopping a service on another day is not overruled.
    hold_after_window_seconds: float = Field(default=900.0, ge=0, le=7 * 24 * 3600)

    @staticmethod
    def _holdable(names: list[str], info: ValidationInfo) -> list[str]:
        """With systemd, every name must be one a hold drop-in can cover exactly (``agent.core.holds``)."""
        if info.data.get("backend") == "systemd":
            problems = [p for p in map(systemd_name_problem, names) if p]
            if problems:
                raise ValueError("; ".join(problems))
        return names

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

    @field_validator("services")
    @classmethod
    def _services_holdable(cls, names: list[str], info: ValidationInfo) -> list[str]:
        return cls._holdable(names, info)

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

    @field_validator("jobs")
    @classmethod
    def _jobs_holdable(cls, names: list[str], info: ValidationInfo) -> list[str]:
        return cls._holdable(names, info)

    @model_validator(mode="after")
    def _commands_match(self) -> SchedulerSection:
        self._check_commands(self.jobs, "jobs")
        if self.backend == "command" and self.on_drain_timeout == "stop":
            unstoppable = [n for n, c in self.commands.items() if c.running and not c.stop_running]
            if unstoppable:
                raise ValueError(f"on_drain_timeout = \"stop\" needs stop_running for {', '.join(sorted(unstoppable))}")
        return self


class EdgeSection(FrozenModel):
    """The edge role: HAProxy's admin socket, the maintenance map, and how to verify the switch.

    ``verify_maintenance`` / ``verify_active`` request the *public* frontend
    (from an address that is not in HAProxy's internal allowlist) and must see
    the maintenance answers, resp. the normal ones, before the box reports the
    new state. Both lists are required: an unverified switch is not a switch.
    """

    #: The runtime API socket the agent talks to: the shipped haproxy.cfg gives it one of its own, level operator.
    admin_socket: Path = Path("/run/haproxy/maintenance-agent.sock")
    #: The map HAProxy reads at start and reload; the agent rewrites it atomically, so it lives in the agent's state dir.
    map_file: BoxPath = Path("/var/lib/maintenance-agent/haproxy/maintenance.map")
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
