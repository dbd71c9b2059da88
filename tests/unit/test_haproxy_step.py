"""EdgeTrafficStep's decisions with a fake runtime and a fake verifier; the map content; the [edge] config."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import tomllib
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from agent.clients.haproxy import MAX_REQUEST_BYTES, AdminSocketMissing, check_token, read_map_file, request_lines, write_map_file
from agent.clients.http_check import FrontendVerifier
from agent.config.roles import EdgeSection, SmokeCheck
from agent.config.schema import AgentConfig, from_mapping
from agent.core.errors import ConfigError, StepError
from agent.core.model import Intent, Mode
from agent.daemon.local.statefile import StateFile
from agent.daemon.steps.base import StepContext
from agent.daemon.steps.haproxy import EdgeTrafficStep, active_entries, build_edge_steps, clean_text, maintenance_entries
from demo.harness.processes import PROJECT
from tests.fakes import FakeRuntime, FakeVerifier

CHECK = {"name": "ui", "url": "http://127.0.0.1:8000/", "expect_status": 503, "expect_body": "marker"}


def decoded(value: str) -> str:
    """What HAProxy's b64dec makes of a map value."""
    return base64.b64decode(value, validate=True).decode()


def edge(tmp_path: Path, **overrides: object) -> EdgeSection:
    doc: dict[str, object] = {
        "admin_socket": str(tmp_path / "admin.sock"),
        "map_file": str(tmp_path / "maintenance.map"),
        "verify_maintenance": [CHECK],
        "verify_active": [{**CHECK, "expect_status": 200}],
    }
    return EdgeSection.model_validate({**doc, **overrides})


def make_step(tmp_path: Path, runtime: FakeRuntime, failures: list[str] | None = None) -> tuple[EdgeTrafficStep, FakeVerifier]:
    verifier = FakeVerifier(failures or [])

    def factory(checks: Sequence[SmokeCheck], attempts: int, interval: float) -> FakeVerifier:
        return verifier

    return EdgeTrafficStep(edge(tmp_path), runtime=runtime, verifier=factory), verifier


def ctx(tmp_path: Path, intent: Intent | None = None) -> StepContext:
    intent = intent or Intent(mode=Mode.MAINTENANCE, index=9, message="Back soon", reason="db")
    return StepContext(intent=intent, node="edge-1", memory=StateFile(tmp_path / "state.json"))


# --- the map content --------------------------------------------------------------------


def test_entries_encode_free_text_and_escape_html(tmp_path: Path) -> None:
    message = 'Upgrade <SQL-A> & "B";\nthen\tcheck 100%'
    entries = maintenance_entries(Intent(mode=Mode.MAINTENANCE, message=message, reason="db"), edge(tmp_path))
    for key, value in entries.items():
        check_token(value, key)  # every value is one CLI word and one map word
    assert json.loads(decoded(entries["message_json"])) == 'Upgrade <SQL-A> & "B"; then check 100%'
    assert decoded(entries["message_html"]) == html.escape('Upgrade <SQL-A> & "B"; then check 100%', quote=False)
    assert entries["state"] == "on" and list(entries)[-1] == "state"
    assert entries["ends_epoch"] == "0" and decoded(entries["ends_at_json"]) == "null"


@pytest.mark.parametrize("char", ["&", '"', "\\", "<", "\U0001f527", "\u00e9"], ids=["amp", "quote", "backslash", "lt", "emoji", "e-acute"])
def test_the_longest_worst_escaping_message_fits_runtime_requests(tmp_path: Path, char: str) -> None:
    """message_max_chars at its maximum, every character the worst for some encoding: each command fits a request."""
    config = edge(tmp_path, message_max_chars=2000)
    intent = Intent(mode=Mode.MAINTENANCE, message=char * 2000, reason=char * 500)
    entries = maintenance_entries(intent, config)
    assert json.loads(decoded(entries["message_json"])) == char * 2000
    long_path = "/etc/haproxy/" + "m" * 200 + "/maintenance.map"
    commands = [f"add map @4294967295 {long_path} {key} {value}" for key, value in entries.items()]
    assert all(len(line) + 1 <= MAX_REQUEST_BYTES for line in request_lines(commands))


def test_lone_surrogates_become_replacement_characters(tmp_path: Path) -> None:
    entries = maintenance_entries(Intent(mode=Mode.MAINTENANCE, message="a\ud800b"), edge(tmp_path))
    assert json.loads(decoded(entries["message_json"])) == "a\ufffdb"


def test_entries_convert_the_end_to_utc(tmp_path: Path) -> None:
    ends = datetime(2026, 11, 25, 22, 30, tzinfo=timezone(timedelta(hours=1)))
    entries = maintenance_entries(Intent(mode=Mode.MAINTENANCE, ends_at=ends), edge(tmp_path))
    assert entries["ends_epoch"] == str(int(ends.timestamp()))
    assert decoded(entries["ends_at_json"]) == '"2026-11-25T21:30:00Z"'
    assert decoded(entries["ends_text"]) == "2026-11-25 21:30 UTC"


def test_entries_fall_back_to_the_default_message_and_config_bounds(tmp_path: Path) -> None:
    config = edge(tmp_path, default_message="Wartung", default_retry_after_seconds=120, min_retry_after_seconds=30)
    entries = maintenance_entries(Intent(mode=Mode.MAINTENANCE, message=" \n "), config)
    assert json.loads(decoded(entries["message_json"])) == "Wartung" and json.loads(decoded(entries["reason_json"])) == "planned maintenance"
    assert (entries["retry_default"], entries["retry_min"], entries["retry_max"]) == ("120", "30", "3600")


def test_clean_text_limits_length_to_one_line() -> None:
    assert clean_text("a\r\nb\x00c  d", 100) == "a b c d"
    long = clean_text("word " * 200, 50)
    assert len(long) == 50 and long.endswith("\u2026")


# --- check / apply / revert ------------------------------------------------------------


def test_check_holds_only_when_live_map_file_and_frontend_agree(tmp_path: Path) -> None:
    runtime = FakeRuntime()
    step, verifier = make_step(tmp_path, runtime)
    context = ctx(tmp_path)
    wanted = maintenance_entries(context.intent, step.edge)

    runtime.live = wanted
    assert step.check(context, Mode.MAINTENANCE) is False  # no file on disk yet: a restart would lose it
    write_map_file(step.edge.map_file, wanted)
    assert step.check(context, Mode.MAINTENANCE) is True
    write_map_file(step.edge.map_file, {**wanted, "message_json": "b2xk"})
    assert step.check(context, Mode.MAINTENANCE) is False  # another intent's message
    write_map_file(step.edge.map_file, wanted)
    verifier.failures = ["ui: GET http://x/ answered 200, expected 503"]
    assert step.check(context, Mode.MAINTENANCE) is False


def test_apply_writes_file_then_live_map_then_verifies(tmp_path: Path) -> None:
    runtime = FakeRuntime()
    step, verifier = make_step(tmp_path, runtime)
    context = ctx(tmp_path)
    step.apply(context)
    assert runtime.live == read_map_file(step.edge.map_file) == maintenance_entries(context.intent, step.edge)
    assert verifier.runs == 1
    assert context.notes(step) == {"mode": "maintenance", "intent_index": 9, "state": "on"}
    step.revert(context)
    assert runtime.live == read_map_file(step.edge.map_file) == active_entries()
    assert step.check(context, Mode.ACTIVE) is True


def test_leaving_turns_the_state_off_before_dropping_the_texts(tmp_path: Path) -> None:
    """A request that read state=on just before the swap still finds the message it reads just after."""
    runtime = FakeRuntime()
    step, _ = make_step(tmp_path, runtime)
    context = ctx(tmp_path)
    step.apply(context)
    on = maintenance_entries(context.intent, step.edge)
    step.revert(context)
    assert runtime.history == [on, {**on, "state": "off"}, active_entries()]


def test_failed_verification_is_a_step_error_with_the_details(tmp_path: Path) -> None:
    step, _ = make_step(tmp_path, FakeRuntime(), failures=["ui: GET http://x/ answered 200, expected 503: 'hello'"])
    with pytest.raises(StepError) as err:
        step.apply(ctx(tmp_path))
    assert err.value.step == "edge-traffic"
    assert "state=on" in err.value.detail and "answered 200, expected 503" in err.value.detail


def test_runtime_errors_become_step_errors_but_the_file_is_written(tmp_path: Path) -> None:
    step, _ = make_step(tmp_path, FakeRuntime(error=AdminSocketMissing("HAProxy admin socket /x is missing: fix")))
    with pytest.raises(StepError, match="admin socket /x is missing: fix"):
        step.apply(ctx(tmp_path))
    assert read_map_file(step.edge.map_file) is not None and read_map_file(step.edge.map_file)["state"] == "on"


def test_unreachable_runtime_api_is_no_proof_so_the_reconciler_acts_and_writes_the_file(tmp_path: Path) -> None:
    """check() says False (not raise) when HAProxy cannot be asked, so apply runs and writes the file first."""
    step, _ = make_step(tmp_path, FakeRuntime(error=AdminSocketMissing("HAProxy admin socket /x is missing: fix")))
    context = ctx(tmp_path)
    assert read_map_file(step.edge.map_file) is None
    assert step.check(context, Mode.MAINTENANCE) is False
    with pytest.raises(StepError, match="is missing"):
        step.apply(context)
    assert read_map_file(step.edge.map_file) == maintenance_entries(context.intent, step.edge)


def test_unwritable_map_file_is_a_step_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    step = EdgeTrafficStep(edge(tmp_path, map_file=str(blocker / "maintenance.map")), runtime=FakeRuntime())
    with pytest.raises(StepError, match="cannot write map file"):
        step.apply(ctx(tmp_path))


# --- config and wiring --------------------------------------------------------------------


def base_config(**edge_doc: object) -> dict[str, object]:
    return {"agent": {"roles": ["edge"], "environment": "mock", "node": "edge-1"}, "edge": edge_doc}


def test_edge_config_and_builder() -> None:
    config = from_mapping(base_config(verify_maintenance=[CHECK], verify_active=[CHECK]))
    assert isinstance(config, AgentConfig) and config.edge is not None
    assert config.edge.admin_socket == Path("/run/haproxy/maintenance-agent.sock")
    assert config.edge.map_file == Path("/var/lib/maintenance-agent/haproxy/maintenance.map")
    steps = build_edge_steps(config)
    assert [type(s) for s in steps] == [EdgeTrafficStep] and steps[0].repairs_drift is True


def test_builder_is_empty_for_other_roles() -> None:
    config = from_mapping({"agent": {"roles": ["web"], "environment": "mock", "node": "web-1"}})
    assert build_edge_steps(config) == []


@pytest.mark.parametrize(
    ("edge_doc", "problem"),
    [
        ({"verify_active": [CHECK]}, "edge.verify_maintenance: required key is missing"),
        ({"verify_maintenance": [], "verify_active": [CHECK]}, "edge.verify_maintenance"),
        ({"verify_maintenance": [CHECK], "verify_active": [CHECK], "min_retry_after_seconds": 1000}, "min_retry_after_seconds <="),
        ({"verify_maintenance": [CHECK], "verify_active": [CHECK], "socket": "/x"}, "edge.socket: unknown key"),
    ],
)
def test_edge_config_errors(edge_doc: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        from_mapping(base_config(**edge_doc))
    assert any(problem in p for p in err.value.problems), err.value.problems


def test_edge_role_without_table_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"no \[edge\] table"):
        from_mapping({"agent": {"roles": ["edge"], "environment": "mock", "node": "e"}})


# --- the shipped HAProxy files ---------------------------------------------------------------


def test_fragment_is_the_same_as_in_the_example_config() -> None:
    deploy = PROJECT / "deploy" / "haproxy"
    full = (deploy / "haproxy.cfg").read_text()
    fragment = (deploy / "maintenance.fragment.cfg").read_text()
    block = fragment[fragment.index("\t# BEGIN maintenance"):]
    assert block.rstrip("\n") in full


def test_the_page_script_is_the_one_its_content_security_policy_allows() -> None:
    deploy = PROJECT / "deploy" / "haproxy"
    scripts = re.findall(r"<script[^>]*>(.*?)</script>", (deploy / "maintenance" / "maintenance.html").read_text(), re.S)
    assert len(scripts) == 1 and "%" not in scripts[0], "one script, left alone by HAProxy's log-format"
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    policies = re.findall(r'hdr Content-Security-Policy "([^"]+)"', (deploy / "haproxy.cfg").read_text())
    assert len(policies) == 1 and f"script-src 'sha256-{digest}'" in policies[0] and "default-src 'none'" in policies[0]


def test_templates_only_use_variables_the_config_sets() -> None:
    deploy = PROJECT / "deploy" / "haproxy"
    set_vars = set(re.findall(r"set-var\((txn\.\w+)\)", (deploy / "haproxy.cfg").read_text()))
    for name in ("maintenance.html", "maintenance.json"):
        used = set(re.findall(r"var\((txn\.\w+)\)", (deploy / "maintenance" / name).read_text()))
        assert used and used <= set_vars, (name, used - set_vars)


def test_verifier_retries_until_the_checks_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = [["ui: GET http://x/ answered 200, expected 503"], ["ui: GET http://x/ answered 200, expected 503"], []]
    pauses: list[float] = []
    verifier = FrontendVerifier([SmokeCheck(**CHECK)], attempts=3, interval=0.25, sleep=pauses.append)
    monkeypatch.setattr(verifier, "run_once", lambda: answers.pop(0))
    assert verifier.verify() == [] and pauses == [0.25, 0.25]

    stubborn = FrontendVerifier([SmokeCheck(**CHECK)], attempts=2, interval=0, sleep=pauses.append)
    monkeypatch.setattr(stubborn, "run_once", lambda: ["still 200"])
    assert stubborn.verify() == ["still 200"]


def test_the_documented_edge_config_is_valid() -> None:
    readme = (PROJECT / "deploy" / "haproxy" / "README.md").read_text()
    example = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    config = from_mapping(tomllib.loads(example))
    assert config.edge is not None and len(config.edge.verify_maintenance) == 2
    assert build_edge_steps(config)[0].describe() == "edge/edge-traffic"
