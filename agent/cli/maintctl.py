"""``maintctl``: the operator's tool to open, follow, close, audit and plan maintenance windows.

Thin by design: options are parsed and validated here, the work is done by
``agent.ops.fleet`` (snapshots, check-and-set writes), ``agent.ops.history`` (the
audit trail) and ``agent.core.planning`` (the window rules); ``options`` holds the
shared plumbing and ``agent.ops.render`` draws; ``history`` and ``plan`` live in
``history_plan``, ``announce`` in ``announce``.

Exit codes: 0 done / converged; 1 not converged yet, blocked, timed out, or a
plan over the limit; 2 an error (Consul unreachable, ACL refusal, a
check-and-set conflict, bad input, no agents registered, an invalid intent);
130 interrupted (``status --watch`` instead exits with its last verdict).
Every error is one line on stderr starting with ``maintctl: error:``.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from agent import __version__
from agent.cli.alert_gate import alert_gate
from agent.cli.announce import announce, notices_command, notices_option, notify_on_flip
from agent.cli.errors import EXIT_NOT_YET, EXIT_OK
from agent.cli.history_plan import history, plan_command
from agent.cli.options import (
    DURATION,
    MaintctlGroup,
    OperatorError,
    Settings,
    console,
    history_is_best_effort,
    login_user,
    observe_phase,
    print_json,
    terminal_width,
    time_option,
    utc_now,
)
from agent.config.connection import DEFAULT_ADDRESS, ENVIRONMENT, FLAG_NAMES, resolve
from agent.core.model import Intent, Mode
from agent.core.planning import DEFAULT_MAX_WINDOW, PlanningError, format_duration, window, zone

# Each command imports what only it needs (the Consul gateway, rich, the
# history): `maintctl --help` and a typo'd option answer in a few milliseconds.
if TYPE_CHECKING:
    from agent.config.partners import NoticesSection
    from agent.ops.fleet import FleetReader, FleetSnapshot

_ENVIRONMENT_HELP = "\b\nEnvironment variables (as the consul command reads them; flags win):\n" + "\n".join(
    f"  {name:<24} {meaning}" for name, meaning in ENVIRONMENT.items()) + (
    "\n  MAINTCTL_ENV, MAINTCTL_TZ, MAINTCTL_PREFIX, MAINTCTL_MAX_WINDOW,"
    "\n  MAINTCTL_SLOT_TIME, MAINTCTL_NOTICES: the options of those names"
    "\n\nGlobal options may also follow the command: maintctl status --env prod.")


@click.group(cls=MaintctlGroup, epilog=_ENVIRONMENT_HELP,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, "--version", "-V", prog_name="maintctl")
@click.option("--consul", "--http-addr", "address", default=None, metavar="ADDR",
              help=f"Consul HTTP(S) address (env CONSUL_HTTP_ADDR; default {DEFAULT_ADDRESS}).")
@click.option("--token", default=None, help="Consul ACL token (else --token-file, CONSUL_HTTP_TOKEN_FILE, CONSUL_HTTP_TOKEN).")
@click.option("--token-file", type=click.Path(path_type=Path), default=None, help="File holding the Consul ACL token (env CONSUL_HTTP_TOKEN_FILE).")
@click.option("--ca-file", type=click.Path(path_type=Path), default=None, help="CA certificate to verify Consul's TLS certificate (env CONSUL_CACERT).")
@click.option("--client-cert", type=click.Path(path_type=Path), default=None, help="Client certificate for Consul's verify_incoming (env CONSUL_CLIENT_CERT).")
@click.option("--client-key", type=click.Path(path_type=Path), default=None, help="Key of the client certificate (env CONSUL_CLIENT_KEY).")
@click.option("--tls-server-name", default=None, help="Name to verify Consul's certificate against (env CONSUL_TLS_SERVER_NAME).")
@click.option("--env", "environment", envvar="MAINTCTL_ENV", default=None, help="Environment: final, mock, prod, ... (env MAINTCTL_ENV).")
@click.option("--prefix", envvar="MAINTCTL_PREFIX", default="maintenance", show_default=True, help="Consul key prefix.")
@click.option("--max-window", envvar="MAINTCTL_MAX_WINDOW", type=DURATION, default=DEFAULT_MAX_WINDOW,
              help="Policy maximum of a window (default 60m; env MAINTCTL_MAX_WINDOW).")
@click.option("--tz", "tz_name", envvar="MAINTCTL_TZ", default=None, help="Time zone for times you type and see (default: this machine's).")
@click.pass_context
def cli(ctx: click.Context, address: str | None, token: str | None, token_file: Path | None, ca_file: Path | None,
        client_cert: Path | None, client_key: Path | None, tls_server_name: str | None, environment: str | None,
        prefix: str, max_window: timedelta, tz_name: str | None) -> None:
    """Open, follow, close, audit and plan maintenance windows of a fleet."""
    try:
        tz = zone(tz_name)
    except PlanningError as exc:
        raise click.BadParameter(str(exc), param_hint="--tz") from None
    connection = resolve(address=address, token=token, token_file=token_file, ca_file=ca_file, cert_file=client_cert,
                         key_file=client_key, tls_server_name=tls_server_name, names=FLAG_NAMES)
    factory = ctx.obj if callable(ctx.obj) else None
    ctx.obj = Settings(connection=connection, environment=environment, prefix=prefix.strip("/"),
                       max_window=max_window, tz=tz, make_gateway=factory)


def _require_agents(snapshot: FleetSnapshot) -> None:
    from agent.ops.fleet import NoAgents

    if not snapshot.boxes:
        raise NoAgents(f"no maintenance agents registered for environment {snapshot.environment!r} "
                       f"(Consul service maintenance-agent, tag env:{snapshot.environment}); wrong --env?")


# -- on / off / release ----------------------------------------------------------------


@cli.command("on", short_help="Open a window: write the intent (check-and-set).")
@click.option("--reason", required=True, help="Why: shown to operators and kept in the history.")
@click.option("--for", "length", type=DURATION, default=None, help="Length of the window, e.g. 45m (default: the policy maximum).")
@click.option("--until", "until_text", default=None, help="Announced end instead of --for: 23:00 or an ISO time.")
@click.option("--at", "at_text", default=None, help="Scheduled start (default now): 22:00 or an ISO time.")
@click.option("--message", default="", help="Text for the maintenance page.")
@click.option("--by", default=login_user, show_default="the login user", help="Who asks.")
@click.option("--dry-run", is_flag=True, help="Print the plan and write nothing.")
@click.option("--force", is_flag=True, help="Allow a window longer than the policy maximum.")
@click.option("--replace", "replace_window", is_flag=True, help="Replace a maintenance window already in progress.")
@click.option("--json", "as_json", is_flag=True, help="The plan (with --dry-run) or what was written, as JSON.")
@notices_option
@click.pass_obj
def on(settings: Settings, reason: str, length: timedelta | None, until_text: str | None, at_text: str | None,
       message: str, by: str, dry_run: bool, force: bool, replace_window: bool, as_json: bool, notices: NoticesSection | None) -> None:
    """Take the environment into maintenance (check-and-set write of the desired key)."""
    from agent.ops import views

    now = utc_now().replace(microsecond=0)
    start = time_option(at_text, "--at", now, settings.tz)
    until = time_option(until_text, "--until", now, settings.tz)
    try:
        planned = window(now, start, length, until, settings.max_window, force)
    except OverflowError:
        raise click.BadParameter("the window ends beyond the year 9999", param_hint="--at/--for/--until") from None
    reader = settings.reader()
    snapshot = reader.read()
    _require_agents(snapshot)
    current = snapshot.intent
    if current is not None and current.mode is Mode.MAINTENANCE and not replace_window:
        raise OperatorError(f"a maintenance window is already in progress ({views.describe_intent(current, None, tz=settings.tz)}); "
                            "pass --replace to replace it")
    if not dry_run:
        observe_phase(settings, snapshot)  # the last window may have ended unobserved: close its record before opening one
    intent = Intent(mode=Mode.MAINTENANCE, reason=reason, by=by, message=message,
                    starts_at=start, ends_at=planned.ends_at)
    index = _flip(settings, reader, snapshot, intent, dry_run, as_json, now)
    if index is not None:
        replaced = current.index if current is not None and current.mode is Mode.MAINTENANCE else None
        notify_on_flip(settings, notices, "on", replace(intent, index=index), None, replaced)
    if not dry_run and not as_json:
        click.echo(f"follow with: maintctl --env {snapshot.environment} wait")


@cli.command("off", short_help="Close the window: write active (check-and-set).")
@click.option("--reason", default="", help="Why (kept in the history).")
@click.option("--by", default=login_user, show_default="the login user", help="Who asks.")
@click.option("--dry-run", is_flag=True, help="Print the plan and write nothing.")
@click.option("--json", "as_json", is_flag=True, help="The plan (with --dry-run) or what was written, as JSON.")
@notices_option
@click.pass_obj
def off(settings: Settings, reason: str, by: str, dry_run: bool, as_json: bool, notices: NoticesSection | None) -> None:
    """Bring the environment back from maintenance (check-and-set write of the desired key)."""
    from agent.ops import views

    now = utc_now()
    reader = settings.reader()
    snapshot = reader.read()
    _require_agents(snapshot)
    if snapshot.intent is not None and snapshot.intent.mode is Mode.ACTIVE and snapshot.desired.exists:
        if as_json:
            print_json({"written": False, "key": reader.desired_key, "intent_index": snapshot.intent.index, "why": "already active"})
        else:
            click.echo(f"already active ({views.describe_intent(snapshot.intent, None, tz=settings.tz)}); nothing written")
        return
    if not dry_run:
        observe_phase(settings, snapshot)  # the entry may have completed unobserved: record it before it is gone
    closing = Intent(mode=Mode.ACTIVE, reason=reason, by=by)
    index = _flip(settings, reader, snapshot, closing, dry_run, as_json, now)
    if index is not None:
        notify_on_flip(settings, notices, "off", replace(closing, index=index), snapshot.intent)
    if not dry_run and not as_json:
        click.echo(f"follow with: maintctl --env {snapshot.environment} wait")


@cli.command("release", short_help="Let the gates pass without a dead box (recorded).")
@click.argument("node")
@click.option("--reason", required=True, help="Why the fleet may go on without this box (kept in the history).")
@click.option("--by", default=login_user, show_default="the login user", help="Who decides.")
@click.pass_obj
def release(settings: Settings, node: str, reason: str, by: str) -> None:
    """Let the gates pass without NODE, a dead box say; recorded in the intent's release list."""
    from agent.ops.fleet import IntentWriter
    from agent.ops.history import Request

    now = utc_now()
    reader = settings.reader()
    snapshot = reader.read()
    _require_agents(snapshot)
    if snapshot.intent is None or not snapshot.desired.exists:
        raise OperatorError(f"{snapshot.desired_key} holds no valid intent to release {node} from; write one with on/off first")
    if snapshot.box(node) is None:
        known = ", ".join(b.node for b in snapshot.boxes)
        raise OperatorError(f"{node} is not a box of environment {snapshot.environment!r} (known: {known})")
    if node in snapshot.intent.release:
        click.echo(f"{node} is already released in intent {snapshot.intent.index}; nothing written")
        return
    intent = replace(snapshot.intent, index=0, release=tuple(sorted({*snapshot.intent.release, node})))
    index = IntentWriter(settings.gateway(), reader.desired_key).write(intent, snapshot.desired_modify_index)
    click.echo(f"released {node}: the gates no longer wait for it (intent {index})")
    with history_is_best_effort():
        record = settings.history().record_release(Request(at=now.isoformat(), by=by, reason=reason, intent_index=index, node=node))
        if record is None or not any(r.node == node and r.intent_index == index for r in record.releases):
            click.echo(f"maintctl: warning: no open window in the history to record the release of {node} in "
                       "(the intent was not written with maintctl on)", err=True)


def _flip(settings: Settings, reader: FleetReader, snapshot: FleetSnapshot, intent: Intent, dry_run: bool, as_json: bool,
          now: datetime) -> int | None:
    """Write ``intent`` (check-and-set) and record it; returns the new intent index, None on a dry run."""
    from agent.ops import views

    if dry_run:
        if as_json:
            print_json({"dry_run": True, "intent": json.loads(intent.to_json()), "fleet": snapshot.to_dict(now)})
        else:
            click.echo(views.dry_run_view(snapshot, intent, settings.tz, terminal_width(), color=views.color_wanted(sys.stdout)))
        return None
    from agent.ops.fleet import IntentWriter
    from agent.ops.history import Request, WindowRecord

    index = IntentWriter(settings.gateway(), reader.desired_key).write(intent, snapshot.desired_modify_index)
    request = Request(at=now.isoformat(), by=intent.by, reason=intent.reason, intent_index=index)
    if as_json:
        print_json({"written": True, "key": reader.desired_key, "intent_index": index, "intent": json.loads(intent.to_json()),
                     "follow": f"maintctl --env {snapshot.environment} wait"})
    else:
        click.echo(f"wrote {reader.desired_key} (intent {index}): {views.describe_intent(intent, None, written=False, tz=settings.tz)}")
    history = settings.history()
    with history_is_best_effort():
        if intent.mode is Mode.MAINTENANCE:
            starts_at = intent.starts_at or now
            assert intent.ends_at is not None
            if snapshot.intent is not None and snapshot.intent.mode is Mode.MAINTENANCE:
                history.record_replaced(index)
            history.open(WindowRecord(opened=request, starts_at=starts_at.isoformat(), ends_at=intent.ends_at.isoformat(),
                                      message=intent.message), now)
        else:
            history.record_closed(request)
    return index


# -- status / wait -------------------------------------------------------------------------


def _verdict(snapshot: FleetSnapshot) -> int:
    return snapshot.verdict()  # reported drift counts as "not yet": an operator must look


@cli.command("status", short_help="One row per box; exit 0 converged, 1 not yet or drift, 2 error.")
@click.option("--watch", is_flag=True, help="Follow live (blocking queries) until interrupted.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (one document per update with --watch).")
@click.option("--full/--summary", default=None, help="A row per box / a row per role (default: per role above 30 boxes).")
@click.pass_obj
def status(settings: Settings, watch: bool, as_json: bool, full: bool | None) -> None:
    """One row per box (per role above 30 boxes); exit 0 converged to the intent, 1 not yet, blocked or drift reported, 2 error."""
    from agent.ops import views

    reader = settings.reader()
    if not watch:
        snapshot = reader.read()
        _require_agents(snapshot)
        if as_json:
            print_json(snapshot.to_dict(utc_now()))
        else:
            click.echo(views.status_view(snapshot, utc_now(), settings.tz, terminal_width(), color=views.color_wanted(sys.stdout), full=full))
        sys.exit(_verdict(snapshot))
    verdict = EXIT_NOT_YET
    try:
        if as_json:
            for snapshot in reader.follow():
                verdict = _follow_step(settings, snapshot)
                click.echo(json.dumps(snapshot.to_dict(utc_now()), sort_keys=True))
        elif not sys.stdout.isatty():  # a log or a pipe: each change appended, flushed, not redrawn
            for snapshot in reader.follow():
                verdict = _follow_step(settings, snapshot)
                click.echo(views.status_view(snapshot, utc_now(), settings.tz, terminal_width(), full=full))
                sys.stdout.flush()
        else:
            from rich.live import Live
            from rich.text import Text

            with Live(console=console(), auto_refresh=False) as live:
                for snapshot in reader.follow():
                    verdict = _follow_step(settings, snapshot)
                    shown = views.status_view(snapshot, utc_now(), settings.tz, live.console.width, color=views.color_wanted(sys.stdout),
                                              full=full)
                    live.update(Text.from_ansi(shown), refresh=True)
    except KeyboardInterrupt:
        pass
    sys.exit(verdict)


def _follow_step(settings: Settings, snapshot: FleetSnapshot) -> int:
    if snapshot.converged:
        observe_phase(settings, snapshot)
    return _verdict(snapshot)


@cli.command("wait", short_help="Follow the fleet until it converges or times out.")
@click.option("--timeout", type=DURATION, default="10m", show_default=True, help="Give up after this long.")
@click.option("--fail-fast", is_flag=True,
              help="Exit 1 at the first error a box reports. Without it a reported error is shown at once and "
                   "the wait goes on: the agent retries the step, and it may pass.")
@click.option("--json", "as_json", is_flag=True, help="Print the final snapshot as JSON (progress lines go to stderr).")
@click.pass_obj
def wait(settings: Settings, timeout: timedelta, fail_fast: bool, as_json: bool) -> None:
    """Follow the fleet until it converges: exit 0 converged, 1 timed out (or --fail-fast), 2 error.

    A box's error is printed the moment its status reports it (box, role, step,
    message), and again when it clears. On a terminal a progress bar per role;
    off one (a CI log, tee) one flushed line per change.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from agent.ops import render
    from agent.ops.follow import ChangeTracker

    reader = settings.reader()
    out = console()
    live = out.is_terminal and not as_json
    deadline = time.monotonic() + timeout.total_seconds()
    tracker = ChangeTracker()
    snapshot: FleetSnapshot | None = None
    columns = (TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=out, disable=not live) as progress:
        tasks: dict[str, Any] = {}
        for snapshot in reader.follow(deadline=deadline):
            _require_agents(snapshot)
            if snapshot.intent is None:
                raise OperatorError(f"{snapshot.desired_key} holds an invalid intent: {snapshot.intent_error}")
            now = utc_now()
            for change in tracker.update(snapshot, now):
                shown = render.change_line(change, now, settings.tz)
                if live:
                    if change.kind != "phase":
                        progress.console.print(shown)
                else:
                    click.echo(shown.plain, err=as_json)
            direction = "entering" if snapshot.intent.mode is Mode.MAINTENANCE else "exiting"
            for step in snapshot.roles_progress():
                if step.role not in tasks:
                    tasks[step.role] = progress.add_task(step.role, total=step.total)
                progress.update(tasks[step.role], description=f"{direction} {step.role}", completed=step.done, total=step.total)
            if snapshot.converged or (fail_fast and tracker.failing):
                break
    assert snapshot is not None
    now = utc_now()
    if as_json:
        print_json(snapshot.to_dict(now))
    if snapshot.converged:
        observe_phase(settings, snapshot)
        if not as_json:
            click.echo(f"converged: every box {snapshot.phase(now)} (intent {snapshot.intent.index if snapshot.intent else '?'})")
        sys.exit(EXIT_OK)
    if not as_json:
        reason = f"failed fast ({len(tracker.failing)} box(es) reporting an error)" if fail_fast and tracker.failing \
            else f"timed out after {format_duration(timeout)}"
        click.echo(f"{reason}: {snapshot.phase(now)}")
        for line in snapshot.blockers():
            click.echo(f"  blocked: {line}")
    sys.exit(EXIT_NOT_YET)


cli.add_command(announce)
cli.add_command(notices_command)
cli.add_command(alert_gate)
cli.add_command(history)
cli.add_command(plan_command)


def main() -> None:
    cli(prog_name="maintctl")


if __name__ == "__main__":
    main()
