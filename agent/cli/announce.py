"""``maintctl announce`` and the automatic partner notices of ``on``/``off``.

Apart from ``maintctl.py`` because it is its own concern (partners, signing,
calendars) with its own option (``--notices FILE``: a TOML file with a
``[notices]`` table, e.g. an edge box's agent config) and its own exit rules:
0 every partner has the notice (now or already), 1 a delivery failed, 2 an
error. The claims in Consul are the agents' (``agent.partners.dispatch``), so
an operator announcing twice, or an edge box and maintctl, never notify a
partner twice about the same event; ``--again`` makes a new event on purpose.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from agent.cli.errors import EXIT_NOT_YET, EXIT_OK
from agent.cli.options import OperatorError, Settings, login_user, utc_now, writable_file
from agent.core.errors import ConfigError
from agent.core.model import Intent, Mode

if TYPE_CHECKING:  # imported where used: only a command that notifies partners pays for pydantic and requests
    from agent.config.partners import NoticesSection
    from agent.partners.delivery import Delivery
    from agent.partners.dispatch import NoticeDispatcher
    from agent.partners.ical import CalendarWindow
    from agent.partners.notices import Notice


def _load_option(ctx: click.Context, param: click.Parameter, value: Path | None) -> NoticesSection | None:
    """Validate the file before anything is written, so a typo never leaves a window unannounced."""
    if value is None:
        return None
    try:
        return load_notices(value)
    except ConfigError as exc:
        raise click.BadParameter(" ".join(str(exc).split()), param=param) from None


notices_option = click.option(
    "--notices", "notices", envvar="MAINTCTL_NOTICES", default=None, callback=_load_option,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="TOML file with a [notices] table (partners); env MAINTCTL_NOTICES. With it, on/off notify partners too.")


def load_notices(path: Path) -> NoticesSection:
    import tomllib

    from pydantic import ValidationError

    from agent.config.partners import NoticesSection, name_partners

    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(str(path), [f"cannot read it as TOML: {exc}"]) from None
    if "notices" not in doc:
        raise ConfigError(str(path), ["notices: required table is missing"])
    try:
        return NoticesSection.model_validate(doc["notices"])
    except ValidationError as exc:
        raise ConfigError(str(path), [f"{name_partners(('notices', *e['loc']), doc)}: {e['msg'].removeprefix('Value error, ')}"
                                      for e in exc.errors()]) from None


class _QuietLog:
    """maintctl prints its own lines; the dispatcher's log goes nowhere."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def _dispatcher(settings: Settings, section: NoticesSection) -> NoticeDispatcher:
    from agent.partners.dispatch import NoticeDispatcher

    return NoticeDispatcher(settings.gateway(), f"{settings.prefix}/{settings.env()}", settings.env(),
                            f"maintctl:{login_user()}", section, _QuietLog())


def send_and_report(settings: Settings, section: NoticesSection, notice: Notice) -> list[dict[str, Any]]:
    """Send ``notice`` to every partner (each channel) and the team's chat that want it, wait, and say what happened to each."""
    from agent.partners.delivery import Delivery

    dispatcher = _dispatcher(settings, section)
    try:
        sendings = dispatcher.send(notice)
        results = [(s, s.result.result()) for s in sendings]
    finally:
        dispatcher.stop()
    out: list[dict[str, Any]] = []
    for sending, result in results:
        line: dict[str, Any] = {"partner": sending.recipient, "channel": sending.channel}
        if result is None:
            existing = settings.gateway().get_key(dispatcher.key(f"{notice.intent_index}-{notice.event}", sending.recipient, sending.channel))
            earlier = Delivery.from_json(existing.value) if existing.value else None
            line.update({"state": "already-claimed" if earlier else "not-sent",
                         "by": earlier.claimed_by if earlier else None, "earlier_state": earlier.state if earlier else None})
        else:
            last = result.last
            line.update({"state": result.state, "attempts": len(result.attempts), "last_error": last.error if last else None})
        out.append(line)
    return out


def notify_on_flip(settings: Settings, section: NoticesSection | None, event: str, intent: Intent, window: Intent | None,
                   replaces: int | None = None) -> None:
    """After ``on``/``off`` wrote ``intent``: tell the partners that want ``event`` (when configured).

    ``replaces``: the window ``on --replace`` replaced, so partners' calendars move that entry."""
    if section is None or not (section.partners or section.chat):
        return
    notice = _dispatcher(settings, section).notice(event, intent, window, replaces)
    for line in send_and_report(settings, section, notice):
        click.echo(_describe(line))


def _describe(line: dict[str, Any]) -> str:
    who = "team chat" if line["partner"] == "_team" else f"partner {line['partner']} ({line['channel']})"
    if line["state"] == "already-claimed":
        return f"{who}: already notified by {line['by']} ({line['earlier_state']})"
    if line["state"] == "not-sent":
        return f"{who}: not sent (Consul refused the claim or the notice could not be prepared)"
    error = f", last error: {line['last_error']}" if line.get("last_error") and line["state"] != "delivered" else ""
    return f"{who}: {line['state']} after {line['attempts']} attempt(s){error}"


def calendar_window(settings: Settings, intent: Intent, section: NoticesSection, now: datetime, impact: str) -> CalendarWindow:
    from agent.partners.ical import CalendarWindow

    if intent.ends_at is None:
        raise OperatorError("the intent has no ends_at: a calendar entry needs the announced end")
    starts_at = intent.starts_at or now
    summary = f"Planned maintenance: {settings.env()} (API answers HTTP 503 with Retry-After)"
    description = "\n".join(x for x in (intent.message, f"Reason: {intent.reason}" if intent.reason else "", impact) if x)
    return CalendarWindow(uid=f"maintenance-{settings.env()}-{intent.index}@{section.calendar_domain}", starts_at=starts_at,
                          ends_at=intent.ends_at, summary=summary, description=description)


@click.command("announce", short_help="Tell partners (email, webhook) and the team's chat.")
@notices_option
@click.option("--ics", "ics_path", type=click.Path(dir_okay=False, writable=True, path_type=Path), default=None, callback=writable_file,
              help="Also write the window as an iCalendar file (to mail or publish).")
@click.option("--again", is_flag=True, help="Send a new announcement even if this window was announced already.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def announce(settings: Settings, notices: NoticesSection | None, ics_path: Path | None, again: bool, as_json: bool) -> None:
    """Tell partners about the current window: each partner by its channels (email with a calendar invitation,
    signed webhook), the team's chat, and/or an .ics file."""
    from agent.config.partners import NoticesSection
    from agent.partners.ical import to_ics

    if notices is None and ics_path is None:
        raise click.UsageError("nothing to do: give --notices FILE (or MAINTCTL_NOTICES) and/or --ics FILE")
    section = notices or NoticesSection()
    snapshot = settings.reader().read()
    intent = snapshot.intent
    if intent is None or intent.mode is not Mode.MAINTENANCE or not snapshot.desired.exists:
        raise OperatorError(f"nothing to announce: {snapshot.desired_key} does not ask for maintenance (write it with maintctl on)")
    now = utc_now()
    doc: dict[str, Any] = {"intent_index": intent.index, "partners": []}
    if ics_path is not None:
        ics_path.write_text(to_ics(calendar_window(settings, intent, section, now, section.api_impact), now), encoding="utf-8",
                            newline="")
        doc["ics"] = str(ics_path)
    if notices is not None:
        event = f"announce-{int(now.timestamp())}" if again else "announce"
        notice = _dispatcher(settings, section).notice(event, intent)
        doc["notice"] = notice.id
        doc["partners"] = send_and_report(settings, section, notice)
    if as_json:
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
    else:
        if ics_path is not None:
            click.echo(f"wrote {ics_path}")
        for line in doc["partners"]:
            click.echo(_describe(line))
    failed = any(p["state"] in ("failed", "not-sent") for p in doc["partners"])
    raise SystemExit(EXIT_NOT_YET if failed else EXIT_OK)


def _latest_window(deliveries: list[tuple[int, Delivery]]) -> int:
    """The intent index the newest window's notices start from (its announce, on or start), 0 when none."""
    openings = [index for index, d in deliveries if d.event.split("-", 1)[0] in ("announce", "on", "start")]
    return max(openings, default=0)


@click.command("notices", short_help="What each partner and the team's chat were told, per channel.")
@click.option("--all", "show_all", is_flag=True, help="Every delivery kept, not only the latest window's.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def notices_command(settings: Settings, show_all: bool, as_json: bool) -> None:
    """Per partner and channel (webhook, email, chat): delivered, failed or still sending, with every attempt counted.

    Exit 0 when every delivery shown was delivered, 1 when one failed or is still sending.
    """
    from agent.partners.delivery import Delivery, as_dict

    prefix = f"{settings.prefix}/{settings.env()}/notices/"
    found: list[tuple[int, Delivery]] = []
    for key, read in sorted(settings.gateway().list_prefix(prefix).items()):
        try:
            found.append((int(key[len(prefix):].split("-", 1)[0]), Delivery.from_json(read.value or b"")))
        except (ValueError, TypeError, KeyError):
            continue
    since = 0 if show_all else _latest_window(found)
    shown = [as_dict(d) | {"intent_index": index} for index, d in found if index >= since]
    shown.sort(key=lambda row: (row["intent_index"], row["event"], row["partner"], row["channel"]))
    if as_json:
        click.echo(json.dumps({"deliveries": shown}, indent=2, sort_keys=True))
    elif not shown:
        click.echo("no notices sent" + ("" if show_all else " for the latest window (--all shows every one kept)"))
    else:
        for row in shown:
            who = "team chat" if row["partner"] == "_team" else row["partner"]
            unanswered = f", {row['unanswered']} unanswered" if row["unanswered"] else ""
            click.echo(f"{row['notice']:<28} {who:<12} {row['channel']:<8} {row['state']:<10} "
                       f"{row['attempts']} attempt(s){unanswered}; last: {row['last'] or '-'} (by {row['claimed_by']})")
    raise SystemExit(EXIT_OK if all(row["state"] == "delivered" for row in shown) else EXIT_NOT_YET)
