"""The plumbing every maintctl command shares: global settings, option types, error lines, output.

Why apart from the commands: the policy "every expected failure is one line
on stderr and exit code 2" and the token/address resolution must be the same
for every command, and are easier to read (and test) in one place.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, NoReturn

import click
from rich.console import Console

from agent.clients.consul import ConsulGateway
from agent.config.connection import ConnectionSettingError, ConsulConnection
from agent.core.errors import ConsulPermissionDenied, MaintenanceAgentError
from agent.core.planning import PlanningError, parse_duration
from agent.ops.fleet import FleetReader
from agent.ops.history import HistoryStore

EXIT_OK, EXIT_NOT_YET, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130
ENVIRONMENT_NAME = re.compile(r"[a-z0-9][a-z0-9_\-]{0,63}")
GatewayFactory = Callable[[str, "str | None"], ConsulGateway]


class OperatorError(MaintenanceAgentError):
    """A request maintctl refuses on purpose (a window in progress, an unknown node, ...)."""


class Duration(click.ParamType):
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
    def _gateway(self) -> ConsulGateway:
        if self.make_gateway is not None:
            return self.make_gateway(self.address, self.token)
        return ConsulGateway.connect(self.connection)

    def gateway(self) -> ConsulGateway:
        return self._gateway

    def env(self) -> str:
        if not self.environment:
            raise click.UsageError("which environment? give --env (or set MAINTCTL_ENV)")
        if not ENVIRONMENT_NAME.fullmatch(self.environment):
            raise click.BadParameter(f"{self.environment!r} is not an environment name like prod or mock "
                                     "(lower-case letters, digits, - and _)", param_hint="--env")
        return self.environment

    def reader(self) -> FleetReader:
        return FleetReader(self.gateway(), self.prefix, self.env())

    def history(self, environment: str | None = None) -> HistoryStore:
        return HistoryStore(self.gateway(), f"{self.prefix}/{environment or self.env()}")


# Global options: valid before or after the subcommand (``maintctl status --env prod``), as consul and nomad accept them.
GLOBAL_VALUE_OPTIONS = ("--consul", "--http-addr", "--token", "--token-file", "--ca-file", "--client-cert", "--client-key",
                        "--tls-server-name", "--env", "--prefix", "--max-window", "--tz")


class MaintctlGroup(click.Group):
    """Accepts the global options after the subcommand too, and turns every failure into one line and exit code 2.

    Usage errors included: ``maintctl: error: <what is wrong> (see maintctl <command> --help)``, also
    as a JSON document on stdout when ``--json`` was given. No input a user can type prints a traceback
    (``MAINTCTL_DEBUG=1`` shows one for an unexpected error).
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["maintctl.json"] = "--json" in args[: args.index("--")] if "--" in args else "--json" in args
        return super().parse_args(ctx, hoist_global_options(self, args))

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        as_json = "--json" in argv
        try:
            result = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.ctx.get_help() if exc.ctx else "", err=True)
            sys.exit(EXIT_ERROR)
        except click.UsageError as exc:
            where = f"{exc.ctx.command_path} --help" if exc.ctx else f"{prog_name or self.name} --help"
            fail(f"{exc.format_message()} (see {where})", as_json)
        except click.ClickException as exc:
            fail(exc.format_message(), as_json)
        except click.Abort:
            click.echo(f"{prog_name or self.name}: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except (OSError, ValueError, TypeError, KeyError, LookupError, RuntimeError) as exc:
            if os.environ.get("MAINTCTL_DEBUG"):
                raise
            fail(f"unexpected {type(exc).__name__}: {exc} (a bug: MAINTCTL_DEBUG=1 shows where)", as_json)
        if not standalone_mode:
            return result
        sys.exit(result if isinstance(result, int) else EXIT_OK)

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
    line = " ".join(message.split())
    if as_json:
        click.echo(json.dumps({"error": line, "exit_code": EXIT_ERROR}))
    click.echo(f"maintctl: error: {line}", err=True)
    sys.exit(EXIT_ERROR)


def terminal_width() -> int:
    """The terminal's width; off a terminal ``COLUMNS`` when set (as rich and most tools read it), else 160."""
    stdout = click.get_text_stream("stdout")
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) >= 20:
        return int(columns)
    if stdout.isatty():
        return shutil.get_terminal_size((160, 24)).columns
    return 160


def console() -> Console:
    stdout = click.get_text_stream("stdout")
    return Console(file=stdout, width=terminal_width(), soft_wrap=False)


def utc_now() -> datetime:
    return datetime.now(UTC)


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
