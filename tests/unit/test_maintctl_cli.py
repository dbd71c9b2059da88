"""maintctl's options, plan command, token resolution and error messages, with a fake gateway."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from agent.cli.maintctl import cli
from agent.clients.consul import KeyRead
from agent.core.errors import ConsulPermissionDenied
from agent.core.model import Member, Mode
from agent.ops.history import HistoryStore, Request, WindowRecord
from tests.fakes import FakeGateway


def run(*args: str, gateway: FakeGateway | None = None, env: dict[str, str] | None = None,
        seen: list[tuple[str, str | None]] | None = None) -> Result:
    fake = gateway or FakeGateway()

    def factory(address: str, token: str | None) -> FakeGateway:
        if seen is not None:
            seen.append((address, token))
        return fake

    return CliRunner(env={"CONSUL_HTTP_TOKEN": None, "CONSUL_HTTP_ADDR": None, "MAINTCTL_ENV": None, **(env or {})}).invoke(
        cli, ["--tz", "Europe/Zurich", *args], obj=factory, catch_exceptions=False)


@pytest.mark.parametrize(("args", "estimate", "fits", "cut", "code"), [
    (["--mock-minutes", "25", "--db"], 50, True, False, 0),
    (["--mock-minutes", "35"], 35, True, True, 0),
    (["--mock-minutes", "35", "--db"], 70, False, True, 1),
])
def test_plan_rules(args: list[str], estimate: int, fits: bool, cut: bool, code: int) -> None:
    result = run("plan", *args, "--after", "2026-12-30T22:30", "--json")
    assert result.exit_code == code, result.output
    doc = json.loads(result.stdout)
    assert (doc["estimate_minutes"], doc["fits"], doc["cut_scope"]) == (estimate, fits, cut)
    assert doc["slot_starts_at"] == "2027-01-06T22:00:00+01:00"  # across the year end, Zurich local time


def test_plan_table_flags_and_slot_time() -> None:
    result = run("plan", "--mock-minutes", "35", "--db", "--after", "2026-11-23T09:00", "--slot-time", "06:30")
    assert result.exit_code == 1
    assert "OVER THE LIMIT" in result.stdout and "cut the scope" in result.stdout
    assert "Wed 2026-11-25 06:30" in result.stdout


def test_plan_from_history_uses_the_measured_mock_window() -> None:
    gw = FakeGateway()
    store = HistoryStore(gw, "maintenance/mock")
    opened = datetime(2026, 11, 18, 21, 0, tzinfo=UTC)
    record = store.open(WindowRecord(opened=Request(at=opened.isoformat(), by="a", reason="r", intent_index=5),
                                     starts_at=opened.isoformat(), ends_at=(opened + timedelta(minutes=60)).isoformat()), opened)
    store.record_reached(Mode.MAINTENANCE, opened + timedelta(minutes=2))
    store.record_closed(Request(at=(opened + timedelta(minutes=20)).isoformat(), by="a", reason="", intent_index=6))
    store.record_reached(Mode.ACTIVE, opened + timedelta(minutes=28))
    assert record.key.startswith("maintenance/mock/history/20261118T210000Z-")
    result = run("plan", "--from-history", "mock", "--db", "--json", "--after", "2026-11-23T09:00", gateway=gw)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert (doc["mock_minutes"], doc["estimate_minutes"]) == (28, 56)
    empty = run("plan", "--from-history", "final")
    assert empty.exit_code == 2 and "no measured window in the history of 'final'" in empty.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["plan"], "exactly one of --mock-minutes N or --from-history ENV"),
    (["plan", "--mock-minutes", "5", "--slot-time", "25:00"], "not a local time like 22:00"),
    (["plan", "--mock-minutes", "0"], "--mock-minutes"),
    (["status"], "give --env"),
    (["--env", "prod", "on", "--reason", "r", "--for", "1.5h"], "is not a duration like 45m"),
    (["--env", "prod", "on", "--reason", "r", "--at", "tomorrow"], "is not a time like 22:30"),
    (["--env", "prod", "on", "--reason", "r", "--for", "10m", "--until", "23:00"], "not both"),
    (["--env", "prod", "--max-window", "30m", "on", "--reason", "r", "--for", "45m"], "policy maximum of 30m"),
    (["--tz", "Mars/Olympus", "plan", "--mock-minutes", "5"], "not a time zone name"),
])
def test_bad_input_is_refused_with_exit_2(args: list[str], message: str) -> None:
    result = run(*args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_token_order_flag_then_file_then_environment(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    seen: list[tuple[str, str | None]] = []
    base = ["--env", "prod", "history"]
    run("--token", "from-flag", "--token-file", str(token_file), *base, seen=seen, env={"CONSUL_HTTP_TOKEN": "from-env"})
    run("--token-file", str(token_file), *base, seen=seen, env={"CONSUL_HTTP_TOKEN": "from-env"})
    run(*base, seen=seen, env={"CONSUL_HTTP_TOKEN": "from-env", "CONSUL_HTTP_ADDR": "http://consul.example:8500"})
    run(*base, seen=seen)
    assert [t for _, t in seen] == ["from-flag", "from-file", "from-env", None]
    assert seen[2][0] == "http://consul.example:8500"


class _Denied(FakeGateway):
    def read_prefix(self, prefix: str, index: int = 0, wait: float | None = None) -> tuple[int, dict[str, KeyRead]]:
        raise ConsulPermissionDenied(f"Consul refused list of {prefix} (403 Permission denied)",
                                     rule=f'key_prefix "{prefix}" {{ policy = "list" }}')


def test_permission_denied_names_the_rule_and_hints_at_a_missing_token() -> None:
    result = run("--env", "prod", "status", gateway=_Denied())
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1
    assert line.startswith("maintctl: error: ACL: Consul refused list of maintenance/prod/status/")
    assert 'needs ACL rule: key_prefix "maintenance/prod/status/" { policy = "list" }' in line
    assert "no token given" in line
    with_token = run("--token", "t", "--env", "prod", "status", gateway=_Denied())
    assert "no token given" not in with_token.stderr


def test_on_off_and_status_against_the_fake() -> None:
    gw = FakeGateway(members=[Member(box="web-1", roles=("web",), consul_node="n", alive=True)])
    assert run("--env", "prod", "status", gateway=gw).exit_code == 1  # registered, silent
    on = run("--env", "prod", "on", "--reason", "patch", "--for", "30m", "--message", "back soon", "--by", "erin", gateway=gw)
    assert on.exit_code == 0, on.output
    intent = json.loads(gw.kv["maintenance/prod/desired"][0])
    assert intent["by"] == "erin" and intent["message"] == "back soon"
    ends = datetime.fromisoformat(intent["ends_at"])
    assert timedelta(minutes=29) < ends - datetime.now(UTC) <= timedelta(minutes=30)
    again = run("--env", "prod", "on", "--reason", "x", gateway=gw)
    assert again.exit_code == 2 and "--replace" in again.stderr
    assert run("--env", "prod", "on", "--reason", "x", "--replace", gateway=gw).exit_code == 0
    assert run("--env", "prod", "off", gateway=gw).exit_code == 0
    noop = run("--env", "prod", "off", gateway=gw)
    assert noop.exit_code == 0 and "nothing written" in noop.stdout
    assert len(HistoryStore(gw, "maintenance/prod").records()) == 2
