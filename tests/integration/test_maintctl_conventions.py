"""maintctl as an operator who knows consul and nomad uses it: flags anywhere, --version, JSON everywhere --json is given,
one time zone per screen, and an audit trail that closes itself from the agents' statuses."""

from __future__ import annotations

import json
import shlex
import signal
from pathlib import Path

from agent import __version__
from demo.harness.consul import ConsulAgentProcess
from demo.harness.processes import ManagedProcess, wait_until
from tests.fixtures.maintctl import web_fleet
from tests.fixtures.scripts import popen_script, run_script, script_argv, script_env


def test_global_options_after_the_command_and_version(consul_server: ConsulAgentProcess, environment: str, tmp_path: Path) -> None:
    version = run_script("maintctl", "--version")
    assert version.returncode == 0 and version.stdout.strip() == f"maintctl, version {__version__}"
    helped = run_script("maintctl", "--help")
    for name in ("CONSUL_HTTP_ADDR", "CONSUL_HTTP_TOKEN", "CONSUL_HTTP_TOKEN_FILE", "CONSUL_CACERT", "CONSUL_CLIENT_CERT",
                 "CONSUL_CLIENT_KEY", "CONSUL_TLS_SERVER_NAME", "CONSUL_HTTP_SSL_VERIFY"):
        assert f"\n    {name} " in helped.stdout, name  # each in the environment list of --help
        assert f"\n    {name} " in run_script("maintenance-agent", "--help").stdout, name
    agent_version = run_script("maintenance-agent", "--version")
    assert agent_version.returncode == 0 and __version__ in agent_version.stdout
    with web_fleet(consul_server, environment, tmp_path, count=1):
        after = run_script("maintctl", "status", "--env", environment, "--consul", consul_server.address, "--json")
        assert after.returncode == 0, after.stderr
        assert json.loads(after.stdout)["environment"] == environment
        mixed = run_script("maintctl", "--env", environment, "status", f"--consul={consul_server.address}", "--tz", "UTC")
        assert mixed.returncode == 0, mixed.stderr
        # a subcommand's own value that looks like a global option is left alone
        dry = run_script("maintctl", "on", "--reason", "--env", "--for", "5m", "--dry-run", "--json", "--env", environment,
                         "--consul", consul_server.address)
        assert dry.returncode == 0, dry.stderr
        assert json.loads(dry.stdout)["intent"]["reason"] == "--env"


def test_json_is_json_for_writes_and_errors_and_the_dry_run_has_one_zone(
        consul_server: ConsulAgentProcess, environment: str, tmp_path: Path) -> None:
    base = ["--consul", consul_server.address, "--env", environment]
    unreachable = run_script("maintctl", "--consul", "http://127.0.0.1:1", "--env", environment, "status", "--json")
    assert unreachable.returncode == 2
    assert json.loads(unreachable.stdout) == {"error": unreachable.stderr.strip().removeprefix("maintctl: error: "), "exit_code": 2}
    usage = run_script("maintctl", *base, "on", "--json", "--for", "5m")  # no --reason
    assert usage.returncode == 2 and "Missing option '--reason'" in json.loads(usage.stdout)["error"]
    with web_fleet(consul_server, environment, tmp_path, count=1):
        dry = run_script("maintctl", *base, "--tz", "Europe/Zurich", "on", "--reason", "r", "--at", "2030-01-15T23:00", "--for", "30m",
                         "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert "until 2030-01-15T23:30:00+01:00" in dry.stdout and "starts 2030-01-15T23:00:00+01:00, announced end 2030-01-15T23:30:00+01:00" in dry.stdout
        assert "+00:00" not in dry.stdout

        written = run_script("maintctl", *base, "on", "--reason", "r", "--for", "5m", "--json")
        assert written.returncode == 0, written.stderr
        doc = json.loads(written.stdout)
        assert doc["written"] is True and doc["intent"]["mode"] == "maintenance"
        assert doc["intent_index"] == consul_server.kv_index(f"maintenance/{environment}/desired")


def test_history_closes_a_window_nobody_watched_from_the_agents_statuses(
        consul_server: ConsulAgentProcess, environment: str, tmp_path: Path) -> None:
    base = ["--consul", consul_server.address, "--env", environment]
    with web_fleet(consul_server, environment, tmp_path, count=2) as agents:
        def all_in(state: str) -> bool:
            return all((consul_server.kv_get_json(f"maintenance/{environment}/status/{a.node}") or {}).get("state") == state for a in agents)

        assert run_script("maintctl", *base, "on", "--reason", "unwatched", "--for", "5m").returncode == 0
        wait_until(lambda: all_in("maintenance"), 20.0, what="fleet in maintenance")
        assert run_script("maintctl", *base, "off", "--reason", "done").returncode == 0  # off records the entry it sees
        wait_until(lambda: all_in("active"), 20.0, what="fleet active again")
        # nobody ran wait or status --watch: the history itself reads the statuses and closes the record
        [record] = json.loads(run_script("maintctl", *base, "history", "--json").stdout)
        assert record["active_reached"] is not None and record["duration_seconds"] is not None, record
        since = max(consul_server.kv_get_json(f"maintenance/{environment}/status/{a.node}")["since"] for a in agents)
        assert record["active_reached"] == since  # the boxes' own moment, not when history was run


def test_plans_command_is_accepted_by_on_as_printed(consul_server: ConsulAgentProcess, environment: str, tmp_path: Path) -> None:
    with web_fleet(consul_server, environment, tmp_path, count=1):
        for args in (["--mock-minutes", "35", "--db"], ["--mock-minutes", "20"]):
            planned = run_script("maintctl", "--env", environment, "plan", *args, "--json")
            command = shlex.split(json.loads(planned.stdout)["command"])
            assert command[0] == "maintctl" and ("--force" in command) == ("--db" in args)
            accepted = run_script("maintctl", "--consul", consul_server.address, *command[1:], "--dry-run")
            assert accepted.returncode == 0, accepted.stderr


def test_the_agent_says_why_consul_is_unreachable(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(f'[agent]\nnode = "n1"\nroles = ["web"]\nenvironment = "prod"\nstate_dir = "{tmp_path / "state"}"\n'
                      '[metrics]\nlisten = "127.0.0.1:0"\n[log]\nformat = "json"\n')
    agent = ManagedProcess([*script_argv("maintenance-agent"), "run", "--config", str(config)], tmp_path / "agent.log",
                           env=script_env({"CONSUL_HTTP_ADDR": "http://127.0.0.1:1"}))
    try:
        line = wait_until(lambda: next((json.loads(x) for x in agent.output().splitlines()
                                        if x.startswith("{") and "consul unreachable" in x), None), 30.0, what="the unreachable line")
        assert "connection refused" in line["error"], line  # type: ignore[index]
    finally:
        agent.stop()


def test_status_watch_piped_appends_each_change_as_it_happens(consul_server: ConsulAgentProcess, environment: str, tmp_path: Path) -> None:
    with web_fleet(consul_server, environment, tmp_path, count=1):
        watcher = popen_script("maintctl", ["--consul", consul_server.address, "--env", environment, "--tz", "UTC", "status", "--watch"],
                               env={"COLUMNS": "80"})
        seen: list[str] = []
        try:
            assert watcher.stdout is not None
            for line in watcher.stdout:  # each view arrives flushed, while the watch goes on
                seen.append(line.rstrip("\n"))
                if line.startswith("phase active") and len([s for s in seen if s.startswith("phase ")]) == 1:
                    assert run_script("maintctl", "--consul", consul_server.address, "--env", environment, "on",
                                      "--reason", "piped", "--for", "5m").returncode == 0
                if line.startswith("phase maintenance"):
                    break
            watcher.send_signal(signal.SIGINT)
            assert watcher.wait(timeout=10) == 0
        finally:
            if watcher.poll() is None:
                watcher.kill()
                watcher.wait()
        phases = [s for s in seen if s.startswith("phase ")]
        assert phases[0] == "phase active" and phases[-1] == "phase maintenance" and len(phases) >= 2, seen
        assert all(len(s) <= 80 for s in seen)
