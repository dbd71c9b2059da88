"""Parse the ``desired`` key into an ``Intent``, or refuse it with a precise reason.

Garbage never moves a box: any value that is not exactly one of the forms below
raises ``IntentError`` and the caller keeps doing what it was doing.

Accepted forms:
  * a bare word (surrounding white space ignored, any case):
    ``maintenance`` / ``on`` and ``active`` / ``off``;
  * a JSON object: ``{"mode": <word>, "reason": str, "by": str,
    "starts_at": ISO-8601 with offset, "ends_at": ISO-8601 with offset,
    "message": str, "release": [node, ...], "auto_end": bool}``; only ``mode``
    is required, unknown keys are refused (a typo must not be ignored).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from agent.core.errors import IntentError
from agent.core.model import Intent, Mode

MAX_INTENT_BYTES = 16 * 1024
MAX_TEXT = {"reason": 500, "by": 200, "message": 2000}
MAX_RELEASED = 1000
_NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
_WORDS = {"maintenance": Mode.MAINTENANCE, "on": Mode.MAINTENANCE, "active": Mode.ACTIVE, "off": Mode.ACTIVE}
_FIELDS = {"mode", "reason", "by", "starts_at", "ends_at", "message", "release", "auto_end"}


def parse_intent(raw: bytes | str, index: int) -> Intent:
    """Return the intent the value asks for; ``index`` is the key's ModifyIndex."""
    text = _decode(raw)
    stripped = text.strip()
    if not stripped:
        raise IntentError("empty value: expected 'maintenance', 'active', 'on', 'off' or a JSON object")
    if stripped.startswith("{"):
        return _parse_object(stripped, index)
    if stripped.startswith(("[", '"')) or stripped[0].isdigit() or stripped in ("true", "false", "null"):
        raise IntentError(f"a JSON {_json_kind(stripped)} is not an intent: expected a bare word or a JSON object")
    mode = _WORDS.get(stripped.lower())
    if mode is None:
        raise IntentError(f"unknown mode {_show(stripped)}: expected one of maintenance, active, on, off")
    return Intent(mode=mode, index=index)


def _decode(raw: bytes | str) -> str:
    if isinstance(raw, str):
        data = raw.encode("utf-8", "surrogatepass")
    else:
        data = raw
    if len(data) > MAX_INTENT_BYTES:
        raise IntentError(f"value is {len(data)} bytes, more than the {MAX_INTENT_BYTES} an intent may have")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IntentError(f"value is not UTF-8 text (byte {exc.start})") from None
    if any(ord(c) < 32 and c not in "\t\r\n" for c in text) or "\x7f" in text:
        raise IntentError("value contains control characters")
    return text


def _parse_object(text: str, index: int) -> Intent:
    try:
        doc = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as exc:
        raise IntentError(f"invalid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise IntentError(f"a JSON {type(doc).__name__} is not an intent object")
    unknown = sorted(set(doc) - _FIELDS)
    if unknown:
        raise IntentError(f"unknown field(s) {', '.join(map(_show, unknown))}: allowed are {', '.join(sorted(_FIELDS))}")
    if "mode" not in doc:
        raise IntentError("missing field 'mode': expected one of maintenance, active, on, off")
    mode_value = doc["mode"]
    if not isinstance(mode_value, str) or mode_value.strip().lower() not in _WORDS:
        raise IntentError(f"field 'mode' is {_show(mode_value)}: expected one of maintenance, active, on, off")
    texts = {name: _text_field(doc, name) for name in MAX_TEXT}
    starts_at = _time_field(doc, "starts_at")
    ends_at = _time_field(doc, "ends_at")
    if starts_at and ends_at and ends_at <= starts_at:
        raise IntentError(f"ends_at ({ends_at.isoformat()}) is not after starts_at ({starts_at.isoformat()})")
    auto_end = doc.get("auto_end", False)
    if not isinstance(auto_end, bool):
        raise IntentError(f"field 'auto_end' is {_show(auto_end)}: expected true or false")
    return Intent(
        mode=_WORDS[mode_value.strip().lower()],
        index=index,
        reason=texts["reason"],
        by=texts["by"],
        message=texts["message"],
        starts_at=starts_at,
        ends_at=ends_at,
        release=_release_field(doc),
        auto_end=auto_end,
    )


def _text_field(doc: dict[str, Any], name: str) -> str:
    value = doc.get(name, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise IntentError(f"field {name!r} is {_show(value)}: expected a string")
    if len(value) > MAX_TEXT[name]:
        raise IntentError(f"field {name!r} has {len(value)} characters, more than {MAX_TEXT[name]}")
    return value


def _time_field(doc: dict[str, Any], name: str) -> datetime | None:
    value = doc.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise IntentError(f"field {name!r} is {_show(value)}: expected an ISO-8601 time with offset")
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise IntentError(f"field {name!r} is {_show(value)}: expected an ISO-8601 time like 2026-12-02T22:00:00+01:00") from None
    if moment.tzinfo is None:
        raise IntentError(f"field {name!r} ({value}) has no UTC offset: add Z or +hh:mm")
    return moment


def _release_field(doc: dict[str, Any]) -> tuple[str, ...]:
    value = doc.get("release", [])
    if not isinstance(value, list) or len(value) > MAX_RELEASED:
        raise IntentError(f"field 'release' is {_show(value)}: expected a list of node names")
    for node in value:
        if not isinstance(node, str) or not _NODE_NAME.match(node):
            raise IntentError(f"field 'release' holds {_show(node)}: expected node names")
    return tuple(sorted(set(value)))


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _json_kind(text: str) -> str:
    try:
        return type(json.loads(text)).__name__
    except ValueError:
        return "fragment"


def _show(value: Any, limit: int = 60) -> str:
    shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."
