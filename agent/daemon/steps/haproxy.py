"""The edge role's step: switch outside traffic to the maintenance answers and back.

Entering maintenance is the first act of the whole fleet and leaving it the
last, so this step must be certain: it writes the maintenance map file
(atomically, so a reload or restart of HAProxy keeps the state), swaps the
live map through the runtime API (no reload, no dropped connection), and then
*verifies* through the public frontend that users and partners really get the
maintenance answers (or the normal ones) before the box reports the new state.

``check`` compares the live map, the file and the public answers with what the
intent asks for; any difference (HAProxy restarted with an old file, someone
edited the map) makes it false and the reconciler repairs it
(``repairs_drift``).
"""

from __future__ import annotations

import base64
import html
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from agent.clients.haproxy import HAProxyError, HAProxyRuntime, read_map_file, write_map_file
from agent.clients.http_check import FrontendVerifier
from agent.core.errors import StepError
from agent.core.model import Intent, Mode, Role
from agent.daemon.steps.base import Step, StepContext

if TYPE_CHECKING:
    from agent.config.roles import EdgeSection, SmokeCheck
    from agent.config.schema import AgentConfig

MAP_HEADER = (
    "Written by maintenance-agent (edge-traffic step); changed live through the HAProxy runtime API.\n"
    "Hand edits are reverted: change the intent in Consul instead."
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")



class MapRuntime(Protocol):
    """What the step needs from HAProxy (HAProxyRuntime; a fake in unit tests)."""

    def show_map(self, map_path: Path) -> dict[str, str]: ...

    def replace_map(self, map_path: Path, entries: Mapping[str, str]) -> None: ...


class Verifier(Protocol):
    """What the step needs from a verifier (FrontendVerifier; a fake in unit tests)."""

    def verify(self) -> list[str]: ...

    def run_once(self) -> list[str]: ...


VerifierFactory = Callable[[Sequence["SmokeCheck"], int, float], Verifier]


def clean_text(text: str, limit: int) -> str:
    """One line of printable text of at most ``limit`` characters (the page shows one paragraph)."""
    flat = " ".join(_CONTROL.sub(" ", _LONE_SURROGATE.sub("\ufffd", text)).split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "\u2026"


def _encode(text: str) -> str:
    """Base64 of the UTF-8 bytes: one word in the map file and on the CLI whatever the text; HAProxy b64dec's it.

    Base64 also bounds the size: a character takes at most 4 bytes in UTF-8
    (5 once HTML-escaped, ``&amp;``), so at most 20/3 map characters, and a
    2000-character message fits one runtime API request per value.
    """
    return base64.b64encode(text.encode()).decode()


def _json_text(text: str) -> str:
    """``text`` as a JSON string literal, non-ASCII kept as UTF-8 (HAProxy inserts it as is)."""
    return json.dumps(text, ensure_ascii=False)


def maintenance_entries(intent: Intent, edge: EdgeSection) -> dict[str, str]:
    """The map content that puts the frontend into maintenance for ``intent``.

    Pure: the same intent and config always give the same entries, so
    ``check`` can compare them with the live map byte for byte.
    """
    message = clean_text(intent.message, edge.message_max_chars) or edge.default_message
    reason = clean_text(intent.reason, 200) or "planned maintenance"
    entries = {
        "ends_epoch": "0",
        "ends_at_json": _encode("null"),
        "ends_text": _encode("soon"),
        "retry_default": str(edge.default_retry_after_seconds),
        "retry_min": str(edge.min_retry_after_seconds),
        "retry_max": str(edge.max_retry_after_seconds),
        "message_json": _encode(_json_text(message)),
        # Element text only (the page shows it in a <p>): quotes need no escaping there.
        "message_html": _encode(html.escape(message, quote=False)),
        "reason_json": _encode(_json_text(reason)),
    }
    if intent.ends_at is not None:
        ends = intent.ends_at if intent.ends_at.tzinfo else intent.ends_at.replace(tzinfo=UTC)
        ends = ends.astimezone(UTC)
        entries["ends_epoch"] = str(int(ends.timestamp()))
        entries["ends_at_json"] = _encode(_json_text(ends.strftime("%Y-%m-%dT%H:%M:%SZ")))
        entries["ends_text"] = _encode(ends.strftime("%Y-%m-%d %H:%M UTC"))
    # state last: readers of the file see the values before the switch itself.
    entries["state"] = "on"
    return entries


def active_entries() -> dict[str, str]:
    """The map content of normal operation: only the switch, off."""
    return {"state": "off"}


def _verifier(checks: Sequence[SmokeCheck], attempts: int, interval: float) -> Verifier:
    return FrontendVerifier(checks, attempts=attempts, interval=interval)


class EdgeTrafficStep(Step):
    """Sends outside traffic to HAProxy's maintenance answers (apply) and back (revert)."""

    name = "edge-traffic"
    role = Role.EDGE
    repairs_drift = True
    local_check = True

    def __init__(self, edge: EdgeSection, runtime: MapRuntime | None = None, verifier: VerifierFactory = _verifier):
        self.edge = edge
        self.runtime: MapRuntime = runtime or HAProxyRuntime(edge.admin_socket, timeout=edge.socket_timeout_seconds)
        self._verifier = verifier

    def expected(self, intent: Intent, target: Mode) -> dict[str, str]:
        return maintenance_entries(intent, self.edge) if target is Mode.MAINTENANCE else active_entries()

    def check(self, ctx: StepContext, target: Mode) -> bool:
        expected = self.expected(ctx.intent, target)
        on_disk = read_map_file(self.edge.map_file)
        try:
            live = self.runtime.show_map(self.edge.map_file)
        except HAProxyError as exc:
            # No answer about the live map is no proof it holds. Returning False
            # (rather than failing here) lets apply/revert run: they write the
            # file first, so a HAProxy (re)started meanwhile reads the current
            # mode, and then report this same runtime API error.
            ctx.log.warning("edge map unreadable through the runtime API", step=self.name, target=target.value,
                            file_matches=on_disk == expected, error=str(exc))
            return False
        if live != expected or on_disk != expected:
            ctx.log.info(
                "edge map differs from the intent", step=self.name, target=target.value,
                live_state=live.get("state"), file_state=(on_disk or {}).get("state"),
                live_matches=live == expected, file_matches=on_disk == expected,
            )
            return False
        failures = self._checks(target).run_once()
        if failures:
            ctx.log.warning("edge verification failed", step=self.name, target=target.value, failures=failures)
            return False
        return True

    def drift(self, ctx: StepContext, target: Mode, quick: bool = False) -> list[str]:
        """The live map and the file against the intent; the frontend's answers too unless ``quick``."""
        expected = self.expected(ctx.intent, target)
        live = self._call(lambda: self.runtime.show_map(self.edge.map_file))
        on_disk = read_map_file(self.edge.map_file)
        found = []
        if live != expected:
            found.append(f"live map has state={live.get('state', 'missing')}" + ("" if live.get("state") != expected["state"] else " with other values"))
        if on_disk != expected:
            shown = "missing" if on_disk is None else on_disk.get("state", "missing")
            found.append(f"map file has state={shown}" + ("" if shown != expected["state"] else " with other values"))
        if found or quick:
            return found
        return [f"frontend: {failure}" for failure in self._checks(target).run_once()]

    def apply(self, ctx: StepContext) -> None:
        self._switch(ctx, Mode.MAINTENANCE)

    def revert(self, ctx: StepContext) -> None:
        self._switch(ctx, Mode.ACTIVE)

    def _switch(self, ctx: StepContext, target: Mode) -> None:
        """File first (a HAProxy started meanwhile reads it), then the live map, then proof from outside."""
        entries = self.expected(ctx.intent, target)
        try:
            write_map_file(self.edge.map_file, entries, MAP_HEADER)
        except OSError as exc:
            raise StepError(self.name, f"cannot write map file {self.edge.map_file}: {exc.strerror or exc}") from None
        if target is Mode.ACTIVE:
            # HAProxy reads each key of the map separately: a request that saw
            # state=on just before the swap reads the texts just after it. Turn
            # the state off first with the texts still in, drop them after.
            live = self._call(lambda: self.runtime.show_map(self.edge.map_file))
            if live.get("state") == "on":
                self._call(lambda: self.runtime.replace_map(self.edge.map_file, {**live, "state": "off"}))
        self._call(lambda: self.runtime.replace_map(self.edge.map_file, entries))
        started = time.monotonic()
        failures = self._checks(target).verify()
        if failures:
            raise StepError(
                self.name,
                f"HAProxy map switched to state={entries['state']} but the public frontend does not answer as "
                f"{target.value} expects: " + " | ".join(failures),
            )
        ctx.save_notes(self, {"mode": target.value, "intent_index": ctx.intent.index, "state": entries["state"]})
        ctx.log.info("edge traffic switched", step=self.name, target=target.value,
                     verify_seconds=round(time.monotonic() - started, 3))

    def _checks(self, target: Mode) -> Verifier:
        checks = self.edge.verify_maintenance if target is Mode.MAINTENANCE else self.edge.verify_active
        return self._verifier(checks, self.edge.verify_attempts, self.edge.verify_interval_seconds)

    def _call(self, action: Callable[[], dict[str, str] | None]) -> dict[str, str]:
        """Run one runtime API action; its typed error becomes a StepError carrying the fix."""
        try:
            return action() or {}
        except HAProxyError as exc:
            raise StepError(self.name, str(exc), delay=exc.delay) from None


def build_edge_steps(config: AgentConfig) -> list[Step]:
    """The edge role's steps, in order; empty when this box does not hold the edge role."""
    if Role.EDGE not in config.agent.roles or config.edge is None:
        return []
    return [EdgeTrafficStep(config.edge)]
