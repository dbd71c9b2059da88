"""The plumbing every maintctl command shares: global settings, option types, error lines, output.

Why apart from the commands: the policy "every expected failure is one line
on stderr and exit code 2" and the token/address resolution must be the same
for every command, and are easier to read (and test) in one place.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from agent.cli.errors import EXIT_INTERRUPTED, OneLineErrorGroup, fail_line
from agent.config.connection import ConnectionSettingError, ConsulConnection
from agent.core.errors import ConsulPermissionDenied, MaintenanceAgentError
from agent.core.planning import PlanningError, parse_duration, parse_time

if TYPE_CHECKING:  # imported where used: `maintctl --help` must not pay for them
    from rich.console import Console

    from agent.clients.consul import ConsulKV
    from agent.ops.fleet import FleetReader, FleetSnapshot
    from agent.ops.history import HistoryStore

ENVIRONMENT_NAME = re.compile(r"[a-z0-9][a-z0-9_\-]{0,63}")
GatewayFactory = Callable[[str, "str | None"], "ConsulKV"]


class OperatorError(MaintenanceAgentError):
    """A request maintctl refuses on purpose (a window in progress, an unknown node, ...)."""


class Duration(click.ParamType[timedelta]):
    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> timedelta:
        if isinstance(value, timedelta):
            return value
        try:
            duration = parse_duration(str(value))
        except PlanningError as exc:
            self.fail(str(exc), param, ctx)
        if duration > LONGEST_DURATION:
            self.fail(f"{value!r} is longer than {LONGEST_DURATION.days} days", param, ctx)
        return duration


DURATION = Duration()
LONGEST_DURATION = timedelta(days=30)
"""No window, wait or policy is longer; anything beyond is a typo (and would overflow a date)."""


def finite_minutes(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """A positive, finite number of minutes within ``LONGEST_DURATION`` (click's FloatRange lets nan through)."""
    if value is not None and not (math.isfinite(value) and 0 < value <= LONGEST_DURATION.total_seconds() / 60):
        raise click.BadParameter(f"{value} is not a number of minutes between 0 and {LONGEST_DURATION.days} days", ctx=ctx, param=param)
    return value


def environment_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not ENVIRONMENT_NAME.fullmatch(value):
        raise click.BadParameter(f"{value!r} is not an environment name like prod or mock (lower-case letters, digits, - and _)",
                                 ctx=ctx, param=param)
    return value


def writable_file(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """A file to write: its folder must exist, so nothing is sent before the write fails."""
    if value is not None and not value.parent.is_dir():
        raise click.BadParameter(f"{value.parent} is not an existing folder", ctx=ctx, param=param)
    return value


@dataclass(frozen=True)
class Settings:
    """The global options, resolved once: Consul's address, token and TLS as the ``consul`` command resolves them."""

    connection: ConsulConnection
    environment: str | None
    prefix: str
    max_window: timedelta
    tz: tzinfo
    make_gateway: GatewayFactory | None = None

    @property
    def address(self) -> str:
        return self.connection.address

    @property
    def token(self) -> str | None:
        return self.connection.token

    @functools.cached_property
    def _gateway(self) -> ConsulKV:
        if self.make_gateway is not None:
            return self.make_gateway(self.address, self.token)
        from agent.clients.consul import ConsulGateway

        return ConsulGateway.connect(self.connection)

    def gateway(self) -> ConsulKV:
        return self._gateway

    def env(self) -> str:
        if not self.environment:
            raise click.UsageError("which environment? give --env (or set MAINTCTL_ENV)")
        if not ENVIRONMENT_NAME.fullmatch(self.environment):
            raise click.BadParameter(f"{self.environment!r} is not an environment name like prod or mock "
                                     "(lower-case letters, digits, - and _)", param_hint="--env")
        return self.environment

    def reader(self) -> FleetReader:
        from agent.ops.fleet import FleetReader

        return FleetReader(self.gateway(), self.prefix, self.env())

    def history(self, environment: str | None = None) -> HistoryStore:
        from agent.ops.history import HistoryStore

        return HistoryStore(self.gateway(), f"{self.prefix}/{environment or self.env()}")


# Global options: valid before or after the subcommand (``maintctl status --env prod``), as consul and nomad accept them.
GLOBAL_VALUE_OPTIONS = ("--consul", "--http-addr", "--token", "--token-file", "--ca-file", "--client-cert", "--client-key",
                        "--tls-server-name", "--env", "--prefix", "--max-window", "--tz")


class MaintctlGroup(OneLineErrorGroup):
    """Accepts the global options after the subcommand too, and turns every failure into one line and exit code 2.

    Usage errors included: ``maintctl: error: <what is wrong> (see maintctl <command> --help)``, also
    as a JSON document on stdout when ``--json`` was given. No input a user can type prints a traceback
    (``MAINTCTL_DEBUG=1`` shows one for an unexpected error).
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["maintctl.json"] = "--json" in args[: args.index("--")] if "--" in args else "--json" in args
        return super().parse_args(ctx, hoist_global_options(self, args))

    def invoke(self, ctx: click.Context) -> Any:
        as_json = bool(ctx.meta.get("maintctl.json"))
        try:
            return super().invoke(ctx)
        except ConsulPermissionDenied as exc:
            settings = ctx.obj if isinstance(ctx.obj, Settings) else None
            hint = "" if settings is None or settings.token else " — no token given: use --token, --token-file or CONSUL_HTTP_TOKEN"
            fail(f"ACL: {exc}{hint}", as_json)
        except (MaintenanceAgentError, PlanningError, ConnectionSettingError) as exc:
            fail(str(exc), as_json)
        except KeyboardInterrupt:
            click.echo("maintctl: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)


def hoist_global_options(group: click.Group, args: list[str]) -> list[str]:
    """Move global options written after the subcommand in front of it; the subcommand's own values stay put."""
    position, command = None, None
    i = 0
    while i < len(args):
        token = args[i]
        if token == "--":
            return args
        if token in GLOBAL_VALUE_OPTIONS:
            i += 2
            continue
        if not token.startswith("-") and token in group.commands:
            position, command = i, group.commands[token]
            break
        i += 1
    if command is None or position is None:
        return args
    takes_value = {opt for p in command.params if isinstance(p, click.Option) and not p.is_flag and not p.count for opt in p.opts}
    head, kept, moved = args[:position + 1], [], []
    i = position + 1
    while i < len(args):
        token = args[i]
        name = token.split("=", 1)[0]
        if token == "--":
            kept += args[i:]
            break
        if name in GLOBAL_VALUE_OPTIONS and name not in takes_value:
            if "=" in token:
                moved.append(token)
                i += 1
            else:
                moved += args[i:i + 2]
                i += 2
            continue
        kept.append(token)
        if token in takes_value:
            kept += args[i + 1:i + 2]
            i += 1
        i += 1
    return moved + head + kept


def fail(message: str, as_json: bool = False) -> NoReturn:
    """One line on stderr (and, with ``--json``, ``{"error": ...}`` on stdout) and exit code 2."""
    fail_line("maintctl", message, as_json)


def terminal_width() -> int:
    """The terminal's width; off a terminal ``COLUMNS`` when set (as rich and most tools read it), else 160."""
    stdout = sys.stdout
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) >= 20:
        return int(columns)
    if stdout.isatty():
        return shutil.get_terminal_size((160, 24)).columns
    return 160


def console() -> Console:
    from rich.console import Console

    # emoji=False: an operator's reason or message is shown as typed (":x:" stays ":x:"),
    # and the emoji table is never loaded.
    return Console(file=sys.stdout, width=terminal_width(), soft_wrap=False, emoji=False)


def utc_now() -> datetime:
    return datetime.now(UTC)


def login_user() -> str:
    import getpass

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


def time_option(value: str | None, name: str, now: datetime, tz: tzinfo) -> datetime | None:
    """A time an operator typed (``22:00`` or ISO), or a usage error naming the option."""
    if value is None:
        return None
    try:
        return parse_time(value, now, tz)
    except PlanningError as exc:
        raise click.BadParameter(str(exc), param_hint=name) from None


def print_json(doc: Any) -> None:
    click.echo(json.dumps(doc, indent=2, sort_keys=True))


def observe_phase(settings: Settings, snapshot: FleetSnapshot) -> None:
    """Record a phase the fleet reached in the open window's history record (no-op when nothing is new)."""
    reached = snapshot.reached_at()
    if reached is not None and snapshot.intent is not None and snapshot.intent.index > 0:
        with history_is_best_effort():
            settings.history(snapshot.environment).record_reached(snapshot.intent.mode, reached)
