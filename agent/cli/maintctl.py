"""``maintctl``: the operator's tool to open, follow, close, audit and plan maintenance windows.

Thin by design: options are parsed and validated here, the work is done by
``agent.ops.fleet`` (snapshots, check-and-set writes), ``agent.ops.history`` (the
audit trail) and ``agent.core.planning`` (the window rules); ``options`` holds the
shared plumbing and ``agent.ops.render`` draws.

Exit codes: 0 done / converged; 1 not converged yet, blocked, timed out, or a
plan over the limit; 2 an error (Consul unreachable, ACL refusal, a
check-and-set conflict, bad input, no agents registered, an invalid intent);
130 interrupted (``status --watch`` instead exits with its last verdict).
Every error is one line on stderr starting with ``maintctl: error:``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import replace
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import click
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from agent.cli.announce import announce, notices_option, notify_on_flip
from agent.cli.options import (
    DURATION,
    EXIT_ERROR,
    EXIT_NOT_YET,
    EXIT_OK,
    MaintctlGroup,
    OperatorError,
    Settings,
    console,
    default_gateway,
    history_is_best_effort,
    login_user,
    utc_now,
)
from agent.config.partners import NoticesSection
from agent.core.model import Intent, Mode
from agent.core.planning import DEFAULT_MAX_WINDOW, PlanningError, format_duration, parse_clock, parse_time, plan, window, zone
from agent.ops import render
from agent.ops.fleet import FleetReader, FleetSnapshot, IntentWriter, NoAgents
from agent.ops.history import Request, WindowRecord


@click.group(cls=MaintctlGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--consul", "address", envvar="CONSUL_HTTP_ADDR", default="http://127.0.0.1:8500", show_default=True,
              help="Consul HTTP address (env CONSUL_HTTP_ADDR).")
@click.option("--token", default=None, help="Consul ACL token (else --token-file, else env CONSUL_HTTP_TOKEN).")
@click.option("--token-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="File holding the Consul ACL token.")
@click.option("--env", "environment", envvar="MAINTCTL_ENV", default=None, help="Environment: final, mock, prod, ... (env MAINTCTL_ENV).")
@click.option("--prefix", envvar="MAINTCTL_PREFIX", default="maintenance", show_default=True, help="Consul key prefix.")
@click.option("--max-window", envvar="MAINTCTL_MAX_WINDOW", type=DURATION, default=DEFAULT_MAX_WINDOW,
              help="Policy maximum of a window (default 60m; env MAINTCTL_MAX_WINDOW).")
@click.option("--tz", "tz_name", envvar="MAINTCTL_TZ", default=None, help="Time zone for times you type and see (default: this machine's).")
@click.pass_context
def cli(ctx: click.Context, address: str, token: str | None, token_file: Path | None, environment: str | None,
        prefix: str, max_window: timedelta, tz_name: str | None) -> None:
    """Open, follow, close, audit and plan maintenance windows of a fleet."""
    if token is None and token_file is not None:
        token = token_file.read_text().strip() or None
    if token is None:
        token = os.environ.get("CONSUL_HTTP_TOKEN") or None
    try:
        tz = zone(tz_name)
    except PlanningError as exc:
        raise click.BadParameter(str(exc), param_hint="--tz") from None
    factory = ctx.obj if callable(ctx.obj) else default_gateway
    ctx.obj = Settings(address=address, token=token, environment=environment, prefix=prefix.strip("/"),
                       max_window=max_window, tz=tz, make_gateway=factory)


def _time_option(value: str | None, name: str, now: datetime, tz: tzinfo) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_time(value, now, tz)
    except PlanningError as exc:
        raise click.BadParameter(str(exc), param_hint=name) from None


def _require_agents(snapshot: FleetSnapshot) -> None:
    if not snapshot.boxes:
        raise NoAgents(f"no maintenance agents registered for environment {snapshot.environment!r} "
                       f"(Consul service maintenance-agent, tag env:{snapshot.environment}); wrong --env?")


def _print_json(doc: Any) -> None:
    click.echo(json.dumps(doc, indent=2, sort_keys=True))


# -- on / off / release ----------------------------------------------------------------


@cli.command("on")
@click.option("--reason", required=True, help="Why: shown to operators and kept in the history.")
@click.option("--for", "length", type=DURATION, default=None, help="Length of the window, e.g. 45m (default: the policy maximum).")
@click.option("--until", "until_text", default=None, help="Announced end instead of --for: 23:00 or an ISO time.")
@click.option("--at", "at_text", default=None, help="Scheduled start (default now): 22:00 or an ISO time.")
@click.option("--message", default="", help="Text for the maintenance page.")
@click.option("--by", default=login_user, show_default="the login user", help="Who asks.")
@click.option("--dry-run", is_flag=True, help="Print the plan and write nothing.")
@click.option("--force", is_flag=True, help="Allow a window longer than the policy maximum.")
@click.option("--replace", "replace_window", is_flag=True, help="Replace a maintenance window already in progress.")
@click.option("--json", "as_json", is_flag=True, help="With --dry-run: the plan as JSON.")
@notices_option
@click.pass_obj
def on(settings: Settings, reason: str, length: timedelta | None, until_text: str | None, at_text: str | None,
       message: str, by: str, dry_run: bool, force: bool, replace_window: bool, as_json: bool, notices: NoticesSection | None) -> None:
    """Take the environment into maintenance (check-and-set write of the desired key)."""
    now = utc_now().replace(microsecond=0)
    start = _time_option(at_text, "--at", now, settings.tz)
    until = _time_option(until_text, "--until", now, settings.tz)
    planned = window(now, start, length, until, settings.max_window, force)
    reader = settings.reader()
    snapshot = reader.read()
    _require_agents(snapshot)
    current = snapshot.intent
    if current is not None and current.mode is Mode.MAINTENANCE and not replace_window:
        raise OperatorError(f"a maintenance window is already in progress ({render.describe_intent(current, None)}); "
                            "pass --replace to replace it")
    intent = Intent(mode=Mode.MAINTENANCE, reason=reason, by=by, message=message,
                    starts_at=start, ends_at=planned.ends_at)
    index = _flip(settings, reader, snapshot, intent, dry_run, as_json, now)
    if index is not None:
        notify_on_flip(settings, notices, "on", replace(intent, index=index), None)
    if not dry_run:
        click.echo(f"follow with: maintctl --env {snapshot.environment} wait")


@cli.command("off")
@click.option("--reason", default="", help="Why (kept in the history).")
@click.option("--by", default=login_user, show_default="the login user", help="Who asks.")
@click.option("--dry-run", is_flag=True, help="Print the plan and write nothing.")
@click.option("--json", "as_json", is_flag=True, help="With --dry-run: the plan as JSON.")
@notices_option
@click.pass_obj
def off(settings: Settings, reason: str, by: str, dry_run: bool, as_json: bool, notices: NoticesSection | None) -> None:
    """Bring the environment back from maintenance (check-and-set write of the desired key)."""
    now = utc_now()
    reader = settings.reader()
    snapshot = reader.read()
    _require_agents(snapshot)
    if snapshot.intent is not None and snapshot.intent.mode is Mode.ACTIVE and snapshot.desired.exists:
        click.echo(f"already active ({render.describe_intent(snapshot.intent, None)}); nothing written")
        return
    if not dry_run:
        _observe(settings, snapshot)  # the entry may have completed unobserved: record it before it is gone
    closing = Intent(mode=Mode.ACTIVE, reason=reason, by=by)
    index = _flip(settings, reader, snapshot, closing, dry_run, as_json, now)
    if index is not None:
        notify_on_flip(settings, notices, "off", replace(closing, index=index), snapshot.intent)
    if not dry_run:
        click.echo(f"follow with: maintctl --env {snapshot.environment} wait")


@cli.command("release")
@click.argument("node")
@click.option("--reason", required=True, help="Why the fleet may go on without this box (kept in the history).")
@click.option("--by", default=login_user, show_default="the login user", help="Who decides.")
@click.pass_obj
def release(settings: Settings, node: str, reason: str, by: str) -> None:
    """Let the gates pass without NODE (e.g. a dead box): adds it to the intent's release list."""
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
    if dry_run:
        if as_json:
            _print_json({"dry_run": True, "intent": json.loads(intent.to_json()), "fleet": snapshot.to_dict(now)})
        else:
            console().print(render.dry_run_view(snapshot, intent, settings.tz))
        return None
    index = IntentWriter(settings.gateway(), reader.desired_key).write(intent, snapshot.desired_modify_index)
    request = Request(at=now.isoformat(), by=intent.by, reason=intent.reason, intent_index=index)
    click.echo(f"wrote {reader.desired_key} (intent {index}): {render.describe_intent(intent, None, written=False)}")
    history = settings.history()
    with history_is_best_effort():
        if intent.mode is Mode.MAINTENANCE:
            starts_at = intent.starts_at or now
            assert intent.ends_at is not None
            history.open(WindowRecord(opened=request, starts_at=starts_at.isoformat(), ends_at=intent.ends_at.isoformat(),
                                      message=intent.message), now)
        else:
            history.record_closed(request)
    return index


# -- status / wait -------------------------------------------------------------------------


def _verdict(snapshot: FleetSnapshot) -> int:
    if snapshot.intent is None:
        return EXIT_ERROR
    return EXIT_OK if snapshot.converged else EXIT_NOT_YET


def _observe(settings: Settings, snapshot: FleetSnapshot) -> None:
    """Record a phase the fleet reached in the open window's history record (no-op when nothing is new)."""
    reached = snapshot.reached_at()
    if reached is not None and snapshot.intent is not None and snapshot.intent.index > 0:
        with history_is_best_effort():
            settings.history(snapshot.environment).record_reached(snapshot.intent.mode, reached)


@cli.command("status")
@click.option("--watch", is_flag=True, help="Follow live (blocking queries) until interrupted.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (one document per update with --watch).")
@click.option("--full/--summary", default=None, help="A row per box / a row per role (default: per role above 30 boxes).")
@click.pass_obj
def status(settings: Settings, watch: bool, as_json: bool, full: bool | None) -> None:
    """One row per box; exit 0 converged to the intent, 1 not yet or blocked, 2 error."""
    reader = settings.reader()
    if not watch:
        snapshot = reader.read()
        _require_agents(snapshot)
        if as_json:
            _print_json(snapshot.to_dict(utc_now()))
        else:
            console().print(render.status_view(snapshot, utc_now(), settings.tz, full))
        sys.exit(_verdict(snapshot))
    verdict = EXIT_NOT_YET
    try:
        if as_json:
            for snapshot in reader.follow():
                verdict = _follow_step(settings, snapshot)
                click.echo(json.dumps(snapshot.to_dict(utc_now()), sort_keys=True))
        else:
            with Live(console=console(), auto_refresh=False) as live:
                for snapshot in reader.follow():
                    verdict = _follow_step(settings, snapshot)
                    live.update(render.status_view(snapshot, utc_now(), settings.tz, full), refresh=True)
    except KeyboardInterrupt:
        pass
    sys.exit(verdict)


def _follow_step(settings: Settings, snapshot: FleetSnapshot) -> int:
    if snapshot.converged:
        _observe(settings, snapshot)
    return _verdict(snapshot)


@cli.command("wait")
@click.option("--timeout", type=DURATION, default="10m", show_default=True, help="Give up after this long.")
@click.option("--json", "as_json", is_flag=True, help="Print the final snapshot as JSON.")
@click.pass_obj
def wait(settings: Settings, timeout: timedelta, as_json: bool) -> None:
    """A progress bar per phase until the fleet converges: exit 0 converged, 1 timed out, 2 error."""
    reader = settings.reader()
    out = console()
    deadline = time.monotonic() + timeout.total_seconds()
    snapshot: FleetSnapshot | None = None
    columns = (TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=out, disable=as_json) as progress:
        tasks: dict[str, Any] = {}
        for snapshot in reader.follow(deadline=deadline):
            _require_agents(snapshot)
            if snapshot.intent is None:
                raise OperatorError(f"{snapshot.desired_key} holds an invalid intent: {snapshot.intent_error}")
            direction = "entering" if snapshot.intent.mode is Mode.MAINTENANCE else "exiting"
            for step in snapshot.roles_progress():
                if step.role not in tasks:
                    tasks[step.role] = progress.add_task(step.role, total=step.total)
                progress.update(tasks[step.role], description=f"{direction} {step.role}", completed=step.done, total=step.total)
            if snapshot.converged:
                break
    assert snapshot is not None
    now = utc_now()
    if as_json:
        _print_json(snapshot.to_dict(now))
    if snapshot.converged:
        _observe(settings, snapshot)
        if not as_json:
            click.echo(f"converged: every box {snapshot.phase(now)} (intent {snapshot.intent.index if snapshot.intent else '?'})")
        sys.exit(EXIT_OK)
    if not as_json:
        click.echo(f"timed out after {format_duration(timeout)}: {snapshot.phase(now)}")
        for line in snapshot.blockers():
            click.echo(f"  blocked: {line}")
    sys.exit(EXIT_NOT_YET)


# -- history / plan ------------------------------------------------------------------------


@cli.command("history")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="How many windows, newest first.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def history(settings: Settings, limit: int, as_json: bool) -> None:
    """The audit trail: who, when, why, when each phase was reached, how long it really took, overrun or not."""
    records = settings.history().records()[:limit]
    now = utc_now()
    if as_json:
        _print_json([r.to_dict(now) for r in records])
    elif not records:
        click.echo(f"no maintenance windows recorded under {settings.prefix}/{settings.env()}/history/")
    else:
        console().print(render.history_view(records, now, settings.tz))


@cli.command("plan")
@click.option("--mock-minutes", type=click.FloatRange(min=0, min_open=True), default=None, help="How long the work took on Mock.")
@click.option("--from-history", "history_env", default=None, help="Use the measured duration of the last window of this environment (e.g. mock).")
@click.option("--db", is_flag=True, help="Databases are touched: production takes twice Mock's time (SQL-A, then SQL-B).")
@click.option("--slot-time", envvar="MAINTCTL_SLOT_TIME", default="22:00", show_default=True, help="Local start time of Wednesday slots.")
@click.option("--after", "after_text", default=None, help="Propose the first slot after this time (default now).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def plan_command(settings: Settings, mock_minutes: float | None, history_env: str | None, db: bool, slot_time: str,
                 after_text: str | None, as_json: bool) -> None:
    """Estimate a production window from Mock: exit 0 when it fits the policy, 1 when over the limit."""
    if (mock_minutes is None) == (history_env is None):
        raise click.UsageError("give exactly one of --mock-minutes N or --from-history ENV")
    now = utc_now()
    after = _time_option(after_text, "--after", now, settings.tz) or now
    try:
        clock = parse_clock(slot_time)
    except PlanningError as exc:
        raise click.BadParameter(str(exc), param_hint="--slot-time") from None
    if mock_minutes is not None:
        mock, source = timedelta(minutes=mock_minutes), "given"
    else:
        assert history_env is not None
        measured = next((r for r in settings.history(history_env).records() if r.duration is not None), None)
        if measured is None or measured.duration is None:
            raise OperatorError(f"no measured window in the history of {history_env!r} (a window counts once maintctl saw it end)")
        mock, source = measured.duration, f"measured on {history_env}, window opened {measured.opened.at}"
    result = plan(mock, db, after, clock, settings.tz, max_window=settings.max_window)
    if as_json:
        _print_json({**result.to_dict(), "source": source})
    else:
        out = console()
        out.print(render.plan_view(result, settings.tz, source))
        for warning in result.warnings():
            out.print(f"[bold red]![/] {warning}")
    sys.exit(EXIT_OK if result.fits else EXIT_NOT_YET)


cli.add_command(announce)


def main() -> None:
    cli(prog_name="maintctl")


if __name__ == "__main__":
    main()
