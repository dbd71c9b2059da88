"""maintctl against a real Consul with real in-process web agents."""

from __future__ import annotations

import json
import queue
import signal
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import requests

from agent.clients.consul import ConsulGateway, ttl_check
from agent.core.planning import format_duration
from demo.harness.consul import ConsulAgentProcess
from tests.fixtures.maintctl import AclConsul, maintctl, web_fleet
from tests.fixtures.scripts import popen_script


def _desired(environment: str) -> str:
    return f"maintenance/{environment}/desired"


def test_on_then_wait_converges_and_status_json_matches_the_status_keys(
        consul_server: ConsulAgentProcess, environment: str, tmp_path: Path) -> None:
    with web_fleet(consul_server, environment, tmp_path, count=3) as agents:
        before = maintctl(consul_server, environment, "status", "--json")
        assert before.exit_code == 0, before.output  # a fresh environment: converged to the implicit "active"

        on = maintctl(consul_server, environment, "on", "--reason", "kernel patch", "--for", "30m", "--by", "alice")
        assert on.exit_code == 0, on.output
        intent = consul_server.kv_get_json(_desired(environment))
        assert intent["mode"] == "maintenance" and intent["by"] == "alice" and intent["reason"] == "kernel patch"
        index = consul_server.kv_index(_desired(environment))

        waited = maintctl(consul_server, environment, "wait", "--timeout", "20s")
        assert waited.exit_code == 0, waited.output
        assert "converged" in waited.stdout
        for agent in agents:
            status = consul_server.kv_get_json(f"maintenance/{environment}/status/{agent.node}")
            assert (status["state"], status["intent_index"]) == ("maintenance", index)

        result = maintctl(consul_server, environment, "status", "--json")
        assert result.exit_code == 0, result.output
        doc = json.loads(result.stdout)
        assert doc["phase"] == "maintenance" and doc["converged"] is True
        assert doc["desired"]["modify_index"] == index
        assert [b["node"] for b in doc["boxes"]] == sorted(a.node for a in agents)
        for box in doc["boxes"]:
            assert box["status"] == consul_server.kv_get_json(f"maintenance/{environment}/status/{box['node']}")
            assert box["alive"] is True and box["silent"] is False

        table = maintctl(consul_server, environment, "status")
        assert table.exit_code == 0
        assert "phase maintenance" in table.stdout and agents[0].node in table.stdout


def test_a_concurrent_writer_wins_and_on_reports_the_conflict(
        consul_server: ConsulAgentProcess, environment: str, tmp_path: Path) -> None:
    key = _desired(environment)
    theirs = json.dumps({"mode": "maintenance", "by": "bob", "reason": "bob's window"})

    class RacingGateway(ConsulGateway):
        """Someone else writes the key between maintctl's read and its check-and-set write."""

        def put_key(self, k: str, value: bytes | str, cas: int | None = None, acquire: str | None = None) -> bool:
            if k == key:
                consul_server.kv_put(key, theirs)
            return super().put_key(k, value, cas=cas, acquire=acquire)

    with web_fleet(consul_server, environment, tmp_path, count=1):
        result = maintctl(consul_server, environment, "on", "--reason", "mine", "--for", "10m",
                          gateway_factory=lambda address, token: RacingGateway(address, token=token))
        assert result.exit_code == 2
        assert f"someone else changed {key} since it was read" in result.stderr
        assert "bob's window" in result.stderr and "not overwritten" in result.stderr
        assert consul_server.kv_get_json(key) == json.loads(theirs)
        history = maintctl(consul_server, environment, "history", "--json")
        assert json.loads(history.stdout) == []  # the lost write left no audit record either


def test_dry_run_writes_nothing(consul_server: ConsulAgentProcess, environment: str, tmp_path: Path) -> None:
    key = _desired(environment)
    with web_fleet(consul_server, environment, tmp_path, count=2) as agents:
        index = consul_server.kv_put(key, "active")
        result = maintctl(consul_server, environment, "on", "--reason", "try", "--for", "45m", "--dry-run")
        assert result.exit_code == 0, result.output
        assert consul_server.kv_index(key) == index
        assert "dry run: nothing written" in result.stdout
        for agent in agents:
            assert agent.node in result.stdout
        as_json = json.loads(maintctl(consul_server, environment, "on", "--reason", "try", "--dry-run", "--json").stdout)
        assert as_json["dry_run"] is True and as_json["intent"]["mode"] == "maintenance"
        assert consul_server.kv_index(key) == index
        assert maintctl(consul_server, environment, "history", "--json").stdout.strip() == "[]"


def test_history_shows_the_real_duration_of_a_window(consul_server: ConsulAgentProcess, environment: str, tmp_path: Path) -> None:
    with web_fleet(consul_server, environment, tmp_path, count=2):
        assert maintctl(consul_server, environment, "on", "--reason", "patch", "--for", "20m", "--by", "carol").exit_code == 0
        assert maintctl(consul_server, environment, "wait", "--timeout", "20s").exit_code == 0
        refused = maintctl(consul_server, environment, "on", "--reason", "again", "--for", "5m")
        assert refused.exit_code == 2 and "already in progress" in refused.stderr and "--replace" in refused.stderr
        off = maintctl(consul_server, environment, "off", "--reason", "done", "--by", "dave")
        assert off.exit_code == 0, off.output
        assert maintctl(consul_server, environment, "wait", "--timeout", "20s").exit_code == 0

        result = maintctl(consul_server, environment, "history", "--json")
        assert result.exit_code == 0, result.output
        [record] = json.loads(result.stdout)
        assert (record["opened"]["by"], record["opened"]["reason"]) == ("carol", "patch")
        assert (record["closed"]["by"], record["closed"]["reason"]) == ("dave", "done")
        started = datetime.fromisoformat(record["entering_started"])
        reached = datetime.fromisoformat(record["maintenance_reached"])
        closed = datetime.fromisoformat(record["closed"]["at"])
        back = datetime.fromisoformat(record["active_reached"])
        assert started <= reached <= closed <= back
        assert record["duration_seconds"] == pytest.approx((back - started).total_seconds())
        assert 0 < record["duration_seconds"] < 30
        assert record["planned_seconds"] == 20 * 60 and record["overrun"] is False

        table = maintctl(consul_server, environment, "history")
        assert "carol" in table.stdout and "patch" in table.stdout
        assert format_duration(timedelta(seconds=record["duration_seconds"])) in table.stdout


def test_history_of_a_scheduled_window_moved_then_withdrawn(consul_server: ConsulAgentProcess, environment: str, tmp_path: Path) -> None:
    with web_fleet(consul_server, environment, tmp_path, count=1):
        assert maintctl(consul_server, environment, "on", "--reason", "SQL-A", "--at", "2030-01-02T21:00:00Z", "--for", "30m").exit_code == 0
        moved = maintctl(consul_server, environment, "on", "--replace", "--reason", "SQL-A later", "--at", "2030-01-02T22:00:00Z",
                         "--for", "30m")
        assert moved.exit_code == 0, moved.output
        assert maintctl(consul_server, environment, "off", "--reason", "postponed").exit_code == 0
        assert maintctl(consul_server, environment, "wait", "--timeout", "20s").exit_code == 0
        withdrawn, replaced = json.loads(maintctl(consul_server, environment, "history", "--json").stdout)
        table = maintctl(consul_server, environment, "history").stdout
    assert replaced["opened"]["reason"] == "SQL-A" and replaced["replaced_by"] == withdrawn["opened"]["intent_index"]
    assert withdrawn["withdrawn"] is True and withdrawn["active_reached"] is None and withdrawn["duration_seconds"] is None
    assert "withdrawn" in table and "replaced" in table and " open " not in table, table


def test_wait_times_out_on_a_silent_box_and_release_lets_it_pass(
        consul_server: ConsulAgentProcess, environment: str, tmp_path: Path) -> None:
    gateway = ConsulGateway(consul_server.address)
    with web_fleet(consul_server, environment, tmp_path, count=1):
        # a box registered but whose agent never reports: it must block, visibly
        gateway.register_agent_service(f"maintenance-agent:{environment}:ghost", [f"env:{environment}", "role:web"],
                                       {"box": f"{environment}-ghost"}, ttl_check(f"maintenance-agent:{environment}:ghost:ttl", 60))
        try:
            assert maintctl(consul_server, environment, "on", "--reason", "r", "--for", "5m").exit_code == 0
            waited = maintctl(consul_server, environment, "wait", "--timeout", "2s")
            assert waited.exit_code == 1
            assert f"{environment}-ghost: silent" in waited.stdout
            status = maintctl(consul_server, environment, "status")
            assert status.exit_code == 1 and "silent" in status.stdout
            released = maintctl(consul_server, environment, "release", f"{environment}-ghost", "--reason", "box is dead")
            assert released.exit_code == 0, released.output
            assert consul_server.kv_get_json(_desired(environment))["release"] == [f"{environment}-ghost"]
            assert maintctl(consul_server, environment, "wait", "--timeout", "20s").exit_code == 0
            [record] = json.loads(maintctl(consul_server, environment, "history", "--json").stdout)
            assert record["releases"][0]["node"] == f"{environment}-ghost"
        finally:
            requests.put(f"{consul_server.address}/v1/agent/service/deregister/maintenance-agent:{environment}:ghost",
                         timeout=5).raise_for_status()


def test_operator_errors_are_one_line_with_exit_2(consul_server: ConsulAgentProcess, environment: str) -> None:
    empty = maintctl(consul_server, environment, "on", "--reason", "r", "--for", "5m")
    assert empty.exit_code == 2 and f"no maintenance agents registered for environment '{environment}'" in empty.stderr
    assert maintctl(consul_server, environment, "status").exit_code == 2
    bad = maintctl(consul_server, environment, "on", "--reason", "r", "--for", "45x")
    assert bad.exit_code == 2 and "'45x' is not a duration" in bad.stderr
    late = maintctl(consul_server, environment, "on", "--reason", "r", "--until", "26:00")
    assert late.exit_code == 2 and "not a time" in late.stderr
    long = maintctl(consul_server, environment, "on", "--reason", "r", "--for", "90m")
    assert long.exit_code == 2 and "longer than the policy maximum of 1h00m" in long.stderr
    unreachable = maintctl("http://127.0.0.1:1", environment, "status")
    assert unreachable.exit_code == 2
    assert unreachable.stderr.startswith("maintctl: error: Consul at http://127.0.0.1:1 unreachable")
    assert len(unreachable.stderr.strip().splitlines()) == 1


def test_window_length_and_announced_end(consul_server: ConsulAgentProcess, environment: str, tmp_path: Path) -> None:
    with web_fleet(consul_server, environment, tmp_path, count=1):
        at = (datetime.now().astimezone() + timedelta(days=1)).replace(microsecond=0)
        result = maintctl(consul_server, environment, "on", "--reason", "r", "--at", at.isoformat(), "--for", "90m", "--force")
        assert result.exit_code == 0, result.output
        intent = consul_server.kv_get_json(_desired(environment))
        assert datetime.fromisoformat(intent["ends_at"]) - datetime.fromisoformat(intent["starts_at"]) == timedelta(minutes=90)
        status = maintctl(consul_server, environment, "status", "--json")
        assert status.exit_code == 1
        assert json.loads(status.stdout)["phase"].startswith("scheduled for")


def test_acl_refusals_name_the_rule(tmp_path: Path) -> None:
    consul = AclConsul(tmp_path / "consul-acl").start()
    try:
        anonymous = maintctl(consul, "prod", "status")
        assert anonymous.exit_code == 2
        # Consul filters a recursive list it may not show (no 403), so the first refusal is the desired key's read
        assert 'needs ACL rule: key_prefix "maintenance/prod/desired" { policy = "read" }' in anonymous.stderr
        assert "no token given" in anonymous.stderr

        reader = consul.token_with('key_prefix "maintenance/" { policy = "list" }\nservice "maintenance-agent" { policy = "read" }\n'
                                   'node_prefix "" { policy = "read" }')
        gateway = ConsulGateway(consul.address, token=consul.master_token)
        gateway.register_agent_service("maintenance-agent:prod:web-1", ["env:prod", "role:web"], {"box": "web-1"},
                                       ttl_check("maintenance-agent:prod:web-1:ttl", 60))
        token_file = tmp_path / "token"
        token_file.write_text(reader + "\n")
        readonly = maintctl(consul, "prod", "on", "--reason", "r", "--for", "5m", extra=("--token-file", str(token_file)))
        assert readonly.exit_code == 2
        assert readonly.stderr.strip().splitlines() == [
            'maintctl: error: ACL: Consul refused write of maintenance/prod/desired (403 Permission denied) '
            '(needs ACL rule: key "maintenance/prod/desired" { policy = "write" })']
        assert maintctl(consul, "prod", "status", extra=("--token", reader)).exit_code == 1  # readable: one silent box

        # may flip the key but not write the history: the window opens, the missing audit record is said loudly
        flipper = consul.token_with('key_prefix "maintenance/" { policy = "list" }\nkey "maintenance/prod/desired" { policy = "write" }\n'
                                    'service "maintenance-agent" { policy = "read" }\nnode_prefix "" { policy = "read" }')
        opened = maintctl(consul, "prod", "on", "--reason", "r", "--for", "5m", extra=("--token", flipper))
        assert opened.exit_code == 0, opened.output
        assert "maintctl: warning: history not updated" in opened.stderr
        assert 'needs ACL rule: key "maintenance/prod/history/' in opened.stderr
    finally:
        consul.stop()


def test_status_watch_follows_live_and_records_the_phase(consul_server: ConsulAgentProcess, environment: str, tmp_path: Path) -> None:
    with web_fleet(consul_server, environment, tmp_path, count=2):
        watcher = popen_script("maintctl", ["--consul", consul_server.address, "--env", environment, "status", "--watch", "--json"])
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in watcher.stdout or ()], daemon=True).start()
        try:
            # Wait for the first document, not a fixed time: on a loaded machine the start-up alone can take seconds,
            # and a SIGINT before the first snapshot proves nothing about following.
            first = json.loads(lines.get(timeout=60))
            assert first["phase"] == "active"
            assert maintctl(consul_server, environment, "on", "--reason", "watched", "--for", "5m").exit_code == 0
            phases = [first["phase"]]
            while phases[-1] != "maintenance":
                phases.append(json.loads(lines.get(timeout=30))["phase"])  # a document per change, as it happens
            time.sleep(0.5)  # parked in the next blocking query
            interrupted = time.monotonic()
            watcher.send_signal(signal.SIGINT)
            watcher.wait(timeout=10)
            assert time.monotonic() - interrupted < 5.0, "SIGINT ends a watch parked in a blocking query at once"
        finally:
            if watcher.poll() is None:
                watcher.kill()
                watcher.wait()
        assert len(phases) >= 2
        assert watcher.returncode == 0, watcher.stderr.read() if watcher.stderr else ""
        [record] = json.loads(maintctl(consul_server, environment, "history", "--json").stdout)
        assert record["maintenance_reached"] is not None
