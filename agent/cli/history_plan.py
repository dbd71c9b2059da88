"""``maintctl history`` and ``maintctl plan``: the audit trail behind, and the next window ahead.

Apart from ``maintctl.py`` (the commands that change and follow a window)
because they only read: the history records, and the rules that turn Mock's
measured duration into a production window with a command ``on`` accepts.
"""

from __future__ import annotations

import sys
from datetime import timedelta

import click

from agent.cli.errors import EXIT_NOT_YET, EXIT_OK
from agent.cli.options import OperatorError, Settings, console, environment_name, finite_minutes, observe_phase, print_json, time_option, utc_now
from agent.core.errors import MaintenanceAgentError
from agent.core.planning import DEFAULT_MAX_WINDOW, PlanningError, format_duration, parse_clock, plan


def _close_from_statuses(settings: Settings) -> None:
    """Let the agents' own statuses fill in a phase nobody watched (e.g. the end of a window closed without ``wait``)."""
    try:
        snapshot = settings.reader().read()
    except MaintenanceAgentError as exc:
        click.echo(f"maintctl: warning: could not read the fleet to complete open records: {' '.join(str(exc).split())}", err=True)
        return
    observe_phase(settings, snapshot)


@click.command("history", short_help="The audit trail of windows: who, why, how long.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="How many windows, newest first.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def history(settings: Settings, limit: int, as_json: bool) -> None:
    """The audit trail: who, when, why, when each phase was reached, how long it really took, overrun or not."""
    from agent.ops import render  # rich: only the commands that draw with it import it

    _close_from_statuses(settings)
    records = settings.history().records()[:limit]
    now = utc_now()
    if as_json:
        print_json([r.to_dict(now) for r in records])
    elif not records:
        click.echo(f"no maintenance windows recorded under {settings.prefix}/{settings.env()}/history/")
    else:
        out = console()
        out.print(render.history_view(records, now, settings.tz, out.width))


@click.command("plan", short_help="Estimate a production window from Mock's duration.")
@click.option("--mock-minutes", type=float, callback=finite_minutes, default=None, help="How long the work took on Mock.")
@click.option("--from-history", "history_env", default=None, callback=environment_name,
              help="Use the measured duration of the last window of this environment (e.g. mock).")
@click.option("--db", is_flag=True, help="Databases are touched: production takes twice Mock's time (SQL-A, then SQL-B).")
@click.option("--slot-time", envvar="MAINTCTL_SLOT_TIME", default="22:00", show_default=True, help="Local start time of Wednesday slots.")
@click.option("--after", "after_text", default=None, help="Propose the first slot after this time (default now).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def plan_command(settings: Settings, mock_minutes: float | None, history_env: str | None, db: bool, slot_time: str,
                 after_text: str | None, as_json: bool) -> None:
    """Estimate a production window from Mock: exit 0 when it fits the policy, 1 when over the limit."""
    from agent.ops import render

    if (mock_minutes is None) == (history_env is None):
        raise click.UsageError("give exactly one of --mock-minutes N or --from-history ENV")
    now = utc_now()
    after = time_option(after_text, "--after", now, settings.tz) or now
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
    try:
        result = plan(mock, db, after, clock, settings.tz, max_window=settings.max_window)
    except OverflowError:
        raise click.BadParameter("the proposed slot would fall beyond the year 9999", param_hint="--after") from None
    policy_flag = " ".join([*([f"--env {settings.environment}"] if settings.environment else []),
                            *([f"--max-window {format_duration(settings.max_window)}"] if settings.max_window != DEFAULT_MAX_WINDOW else [])])
    if as_json:
        command, why = render.suggested_on(result, settings.tz, policy_flag)
        print_json({**result.to_dict(), "source": source, "command": command, "force_because": why})
    else:
        out = console()
        out.print(render.plan_view(result, settings.tz, source))
        for warning in result.warnings():
            out.print(f"[bold red]![/] {warning}")
        command, why = render.suggested_on(result, settings.tz, policy_flag)
        click.echo(f"command: {command}")
        if why:
            click.echo(f"  {why}")
    sys.exit(EXIT_OK if result.fits else EXIT_NOT_YET)
