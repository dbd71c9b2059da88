"""The plumbing every maintctl command shares: global settings, option types, error lines, output.

Why apart from the commands: the policy "every expected failure is one line
on stderr and exit code 2" and the token/address resolution must be the same
for every command, and are easier to read (and test) in one place.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, NoReturn

import click
from rich.console import Console

from agent.clients.consul import ConsulGateway, ConsulKV
from agent.core.errors import ConsulPermissionDenied, MaintenanceAgentError
from agent.core.planning import PlanningError, parse_duration
from agent.ops.fleet import FleetReader
from agent.ops.history import HistoryStore

EXIT_OK, EXIT_NOT_YET, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130
GatewayFactory = Callable[[str, "str | None"], ConsulKV]


class OperatorError(MaintenanceAgentError):
    """A request maintctl refuses on purpose (a window in progress, an unknown node, ...)."""


class Duration(click.ParamType[timedelta]):
    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> timedelta:
        if isinstance(value, timedelta):
            return value
        try:
            return parse_duration(str(value))
        except PlanningError as exc:
            self.fail(str(exc), param, ctx)


DURATION = Duration()


@dataclass(frozen=True)
class Settings:
    """The global options, resolved once (token: --token, else --token-file, else CONSUL_HTTP_TOKEN)."""

    address: str
    token: str | None
    environment: str | None
    prefix: str
    max_window: timedelta
    tz: tzinfo
    make_gateway: GatewayFactory

    @functools.cached_property
    def _gateway(self) -> ConsulKV:
        return self.make_gateway(self.address, self.token)

    def gateway(self) -> ConsulKV:
        return self._gateway

    def env(self) -> str:
        if not self.environment:
            raise click.UsageError("which environment? give --env (or set MAINTCTL_ENV)")
        return self.environment

    def reader(self) -> FleetReader:
        return FleetReader(self.gateway(), self.prefix, self.env())

    def history(self, environment: str | None = None) -> HistoryStore:
        return HistoryStore(self.gateway(), f"{self.prefix}/{environment or self.env()}")


class MaintctlGroup(click.Group):
    """Turns every expected failure into one line on stderr and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConsulPermissionDenied as exc:
            settings = ctx.obj if isinstance(ctx.obj, Settings) else None
            hint = "" if settings is None or settings.token else " — no token given: use --token, --token-file or CONSUL_HTTP_TOKEN"
            fail(f"ACL: {exc}{hint}")
        except (MaintenanceAgentError, PlanningError) as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            click.echo("maintctl: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)


def fail(message: str) -> NoReturn:
    click.echo(f"maintctl: error: {' '.join(message.split())}", err=True)
    sys.exit(EXIT_ERROR)


def console() -> Console:
    stdout = click.get_text_stream("stdout")
    return Console(file=stdout, width=None if stdout.isatty() else 160)


def utc_now() -> datetime:
    return datetime.now(UTC)


def default_gateway(address: str, token: str | None) -> ConsulGateway:
    return ConsulGateway(address, token=token)


def login_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@contextlib.contextmanager
def history_is_best_effort() -> Iterator[None]:
    """The intent is what matters: a history write that fails is reported, it does not fail the command."""
    try:
        yield
    except MaintenanceAgentError as exc:
        click.echo(f"maintctl: warning: history not updated: {' '.join(str(exc).split())}", err=True)
