"""The intent parser: documented forms accepted, everything else refused with a reason."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.core.errors import IntentError
from agent.core.intent import MAX_INTENT_BYTES, parse_intent
from agent.core.model import Intent, Mode


@pytest.mark.parametrize(
    ("raw", "mode"),
    [
        (b"maintenance", Mode.MAINTENANCE), (b"on", Mode.MAINTENANCE), (b"  ON\n", Mode.MAINTENANCE),
        (b"active", Mode.ACTIVE), (b"off", Mode.ACTIVE), (b"Active", Mode.ACTIVE),
        (b'{"mode": "maintenance"}', Mode.MAINTENANCE), (b'{"mode": "off", "reason": "done"}', Mode.ACTIVE),
    ],
)
def test_accepted_forms(raw: bytes, mode: Mode) -> None:
    assert parse_intent(raw, 7) == Intent(mode=mode, index=7, reason="done" if b"done" in raw else "")


def test_full_json_form() -> None:
    intent = parse_intent(json.dumps({
        "mode": "maintenance", "reason": "SQL-A patch", "by": "alice", "message": "Back soon",
        "starts_at": "2026-12-02T21:00:00+01:00", "ends_at": "2026-12-02T21:45:00Z", "release": ["web-2"],
    }).encode(), 42)
    assert intent.mode is Mode.MAINTENANCE and intent.index == 42 and intent.by == "alice"
    assert intent.starts_at.isoformat() == "2026-12-02T21:00:00+01:00"
    assert intent.ends_at.isoformat() == "2026-12-02T21:45:00+00:00"
    assert intent.release == ("web-2",)
    assert parse_intent(intent.to_json(), 42) == intent


BARE_WORDS = ("on", "off", "maintenance", "active")

MALFORMED = [
    (b"", "empty"),
    (b"   \n", "empty"),
    (b"maintenence", "unknown mode"),
    (b"true", "not an intent"),
    (b"null", "not an intent"),
    (b"42", "not an intent"),
    (b'"on"', "not an intent"),
    (b"[\"on\"]", "not an intent"),
    (b"{", "invalid JSON"),
    (b'{"mode": "on",}', "invalid JSON"),
    (b'{"mode": NaN}', "invalid JSON"),
    (b"{}", "missing field 'mode'"),
    (b'{"mode": 1}', "field 'mode'"),
    (b'{"mode": null}', "field 'mode'"),
    (b'{"mode": "pause"}', "field 'mode'"),
    (b'{"mode": "on", "reasn": "typo"}', "unknown field"),
    (b'{"mode": "on", "reason": 5}', "expected a string"),
    (b'{"mode": "on", "reason": "' + b"x" * 600 + b'"}', "more than 500"),
    (b'{"mode": "on", "ends_at": "tomorrow"}', "ISO-8601"),
    (b'{"mode": "on", "ends_at": "2026-12-02T21:00:00"}', "no UTC offset"),
    (b'{"mode": "on", "starts_at": "2026-12-02T22:00:00Z", "ends_at": "2026-12-02T21:00:00Z"}', "not after"),
    (b'{"mode": "on", "auto_end": "yes"}', "auto_end"),
    (b'{"mode": "on", "release": "web-1"}', "release"),
    (b'{"mode": "on", "release": ["../etc"]}', "release"),
    (b"\xff\xfe\x00on", "not UTF-8"),
    (b"on\x00", "control characters"),
    (b"on" + b" " * (MAX_INTENT_BYTES + 1), "bytes, more than"),
    (b"maintenance please", "unknown mode"),
]


@pytest.mark.parametrize(("raw", "reason"), MALFORMED, ids=[r for _, r in MALFORMED])
def test_malformed_values_are_refused_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(IntentError) as info:
        parse_intent(raw, 3)
    assert reason in str(info.value)


@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_bytes_give_an_intent_or_an_intent_error(raw: bytes) -> None:
    try:
        intent = parse_intent(raw, 5)
    except IntentError as exc:
        assert str(exc)
    else:
        # Only the documented forms pass: a bare word, or a JSON object; and what passed survives a round trip.
        text = raw.decode("utf-8").strip()
        assert text.lower() in BARE_WORDS or text.startswith("{"), f"undocumented form accepted: {raw!r}"
        assert intent.index == 5 and parse_intent(intent.to_json().encode(), 5) == intent


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=10,
)


@given(st.dictionaries(st.sampled_from(["mode", "reason", "by", "starts_at", "ends_at", "message", "release", "auto_end", "x"]),
                       json_values, max_size=6))
def test_json_objects_never_crash_the_parser(doc: dict) -> None:
    try:
        intent = parse_intent(json.dumps(doc).encode(), 9)
    except IntentError:
        return
    assert doc["mode"].strip().lower() in ("on", "off", "maintenance", "active")
    assert parse_intent(intent.to_json(), 9) == intent
