"""10,000 generated intent values and 10,000 generated config files: no crash, no state change, a clear error each.

Intent values go through the real reconciler (with a recording step), so
"no state change" is checked where it matters; config files go through
``config.load`` from disk, as ``check-config`` and start-up read them.
Oversize and non-UTF-8 inputs are part of the strategies.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config.schema import load
from agent.core.errors import ConfigError
from agent.core.intent import MAX_INTENT_BYTES
from agent.core.model import Role, State
from bench.figures import record
from tests.fakes import RecordingStep, make_reconciler, read, settle

EXAMPLES = 10_000

_words = st.sampled_from(["maintenance", "active", "on", "off", "ON", " off\n", "of", "mainten", "null", "true", "{}"])
_json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
                            lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                            max_leaves=10)
_intent_objects = st.fixed_dictionaries({}, optional={
    "mode": st.sampled_from(["maintenance", "active", "on", "off", "x", 1, None]),
    "reason": st.text(max_size=600), "by": st.text(max_size=50), "message": st.text(max_size=50),
    "starts_at": st.sampled_from(["2026-01-01T00:00:00+00:00", "2026-01-01T00:00:00", "yesterday", 5]),
    "ends_at": st.sampled_from(["2026-01-01T01:00:00Z", "2025-01-01T00:00:00+00:00", ""]),
    "release": st.lists(st.text(max_size=10), max_size=3), "auto_end": st.sampled_from([True, False, "yes"]),
    "extra": st.integers(),
})
INTENTS = st.one_of(
    _words.map(str.encode),
    st.binary(max_size=200),                                        # any bytes, mostly not UTF-8
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
    _json_values.map(lambda v: __import__("json").dumps(v).encode()),
    _intent_objects.map(lambda v: __import__("json").dumps(v).encode()),
    st.integers(MAX_INTENT_BYTES - 2, MAX_INTENT_BYTES + 64).map(lambda n: b"o" * n),  # around the size limit
    st.sampled_from([b"\xff\xfe", b"on\x00", b"\xc3(", b"  ", b"{" * 5000]),
)

_toml_scalars = st.one_of(st.integers(-5, 100_000).map(str), st.text(max_size=12).map(lambda t: '"' + t.replace("\\", "").replace('"', "") + '"'),
                          st.sampled_from(["true", "[]", '["web"]', '["web", "edge"]', "{}", "1.5"]))
_keys = st.sampled_from(["node", "roles", "environment", "state_dir", "address", "token", "wait_seconds", "prefix",
                         "backend", "services", "listen", "format", "timeout_seconds", "bogus"])
_tables = st.sampled_from(["agent", "consul", "metrics", "log", "worker", "edge", "web", "hooks", "nope"])
CONFIGS = st.one_of(
    st.lists(st.tuples(_tables, st.lists(st.tuples(_keys, _toml_scalars), max_size=6)), max_size=5).map(
        lambda tables: "\n".join(f"[{t}]\n" + "\n".join(f"{k} = {v}" for k, v in body) for t, body in tables).encode()),
    st.binary(max_size=300),
    st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.sampled_from([b"\xff\xfe[agent]", b"[agent]\nnode = \"a\"\nroles = [\"web\"]\nenvironment = \"prod\"\n" + b"#" * 300_000]),
)


@pytest.mark.slow
def test_ten_thousand_intents_never_move_a_box_unless_valid(tmp_path: Path) -> None:
    journal: list[str] = []
    rec, published = make_reconciler(tmp_path, [Role.WEB], {Role.WEB: [RecordingStep("web-a", Role.WEB, journal)]})
    rec.on_watch_event(read(b"maintenance", 1))
    settle(rec)
    assert rec.state is State.MAINTENANCE
    counter = iter(range(2, 10**9))
    tried = 0

    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(INTENTS)
    def one(value: bytes) -> None:
        nonlocal tried
        tried += 1
        index = next(counter)
        before = rec.state
        journal.clear()
        rec.on_watch_event(read(value, index))
        rec.tick()
        error = published[-1].intent_error
        if error:  # refused: nothing moved, and the status says why
            assert rec.state is before and journal == [], value[:80]
            assert f"intent {index} refused: " in error and len(error) > len(f"intent {index} refused: ") + 5
        else:  # accepted: a valid intent; put the box back for the next example
            rec.on_watch_event(read(b"maintenance", next(counter)))
            settle(rec)
        assert rec.state is State.MAINTENANCE

    one()
    assert tried >= EXAMPLES
    record("generated intent values", inputs=tried, actions_lost=0)


@pytest.mark.slow
def test_ten_thousand_config_files_load_or_fail_clearly() -> None:
    tried = 0
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.toml"

        @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(CONFIGS)
        def one(data: bytes) -> None:
            nonlocal tried
            tried += 1
            path.write_bytes(data)
            try:
                load(path)
            except ConfigError as exc:
                text = str(exc)
                assert str(path) in text and exc.problems and all(p.strip() for p in exc.problems), text

        one()
    assert tried >= EXAMPLES
    record("generated config files", inputs=tried, actions_lost=0)
