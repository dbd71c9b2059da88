"""``maintctl alert-gate override``: let traffic come back without the alert gate, for this window, with a reason.

The alert gate holds the edge (and web, if configured) while an alert that
matters fires, or while Prometheus cannot be asked. Sometimes the operator
knows better (the alert is wrong, Prometheus itself is down for the same
maintenance): the override is written to ``<prefix>/<env>/alert-gate/override``
with the desired key's index, the reason and who gave it; the gated boxes
read it at their next look (``recheck_seconds``) and open for this window
only. It goes into the window's history record, the audit trail.
"""

from __future__ import annotations

import click

from agent.cli.options import OperatorError, Settings, history_is_best_effort, login_user, utc_now


@click.group("alert-gate", short_help="The alert gate before traffic returns: override it for this window.")
def alert_gate() -> None:
    """The alert gate: traffic returns only while no alert that matters fires ([alert_gate] of the agents' config)."""


@alert_gate.command("override", short_help="Let traffic back without the alert gate, for this window (recorded).")
@click.option("--reason", required=True, help="Why traffic may come back anyway (kept in the history).")
@click.option("--by", default=login_user, show_default="the login user", help="Who decides.")
@click.pass_obj
def override(settings: Settings, reason: str, by: str) -> None:
    """Open the alert gate for the current window whatever Prometheus says; the agents log it and the history keeps it."""
    from agent.core.alert_gate import Override
    from agent.ops.history import Request

    if not reason.strip():
        raise click.BadParameter("give the reason the gate may be passed", param_hint="--reason")
    snapshot = settings.reader().read()
    if snapshot.intent is None or not snapshot.desired.exists:
        raise OperatorError(f"{snapshot.desired_key} holds no intent: there is no window whose gate could be overridden")
    now = utc_now()
    record = Override(intent_index=snapshot.desired_modify_index, reason=reason, by=by, at=now.isoformat())
    key = f"{settings.prefix}/{settings.env()}/alert-gate/override"
    settings.gateway().put_key(key, record.to_json())
    click.echo(f"alert gate overridden for this window (intent {record.intent_index}, by {by}): {reason}")
    click.echo("the gated boxes open at their next look (recheck_seconds); follow with: maintctl wait")
    with history_is_best_effort():
        if settings.history().record_override(Request(at=now.isoformat(), by=by, reason=reason, intent_index=record.intent_index)) is None:
            click.echo("maintctl: warning: no open window in the history to record the override in", err=True)
