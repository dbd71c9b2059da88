"""No input a user can give makes maintctl or maintenance-agent print a traceback: exit 2 and one line saying what is wrong."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.fixtures.scripts import run_script

UNREACHABLE = "http://127.0.0.1:1"


def _maintctl_cases(tmp: Path) -> list[tuple[list[str], dict[str, str], str]]:
    """(argv, environment, a word the one line must contain)."""
    folder = tmp / "a-directory"
    folder.mkdir(exist_ok=True)
    binary = tmp / "binary"
    binary.write_bytes(b"\xff\xfe\x00\x01")
    g = ["--consul", UNREACHABLE, "--env", "prod"]
    cases: list[tuple[list[str], dict[str, str], str]] = [
        (["--consul", "127.0.0.1:39855x", "--env", "prod", "status"], {}, "--consul"),
        (["--consul", "", "--env", "prod", "status"], {}, "unreachable"),  # empty flag: the default address, unreachable here
        (["--consul", "ftp://consul", "--env", "prod", "status"], {}, "--consul"),
        (["--consul", "http://x/y?z", "--env", "prod", "status"], {}, "--consul"),
        (["--env", "prod", "status"], {"CONSUL_HTTP_ADDR": "consul:port"}, "CONSUL_HTTP_ADDR"),
        ([*g, "--token-file", str(tmp / "missing"), "status"], {}, "--token-file"),
        ([*g, "--token-file", str(folder), "status"], {}, "--token-file"),
        ([*g, "--token-file", str(binary), "status"], {}, "--token-file"),
        ([*g, "status"], {"CONSUL_HTTP_TOKEN_FILE": str(tmp / "missing")}, "CONSUL_HTTP_TOKEN_FILE"),
        ([*g, "--ca-file", str(tmp / "missing.pem"), "status"], {}, "--ca-file"),
        ([*g, "--ca-file", str(binary), "status"], {}, "unreachable"),  # http: the CA is never read, the address is unreachable
        ([*g, "--client-cert", str(binary), "status"], {}, "--client-key"),
        ([*g, "status"], {"CONSUL_HTTP_SSL_VERIFY": "maybe"}, "CONSUL_HTTP_SSL_VERIFY"),
        (["--consul", UNREACHABLE, "--env", "Prod!", "status"], {}, "--env"),
        (["--consul", UNREACHABLE, "--env", "../etc", "history"], {}, "--env"),
        (["--consul", UNREACHABLE, "status"], {}, "--env"),
        ([*g, "--tz", "Mars/Olympus", "status"], {}, "--tz"),
        ([*g, "--max-window", "45x", "status"], {}, "--max-window"),
        ([*g, "--max-window", "0m", "on", "--reason", "r"], {}, "window"),
        ([*g, "stats"], {}, "No such command"),
        ([*g, "status", "--bogus"], {}, "No such option"),
        ([*g, "on"], {}, "--reason"),
        ([*g, "on", "--reason", "r", "--for", "45x"], {}, "duration"),
        ([*g, "on", "--reason", "r", "--for", "-5m"], {}, "duration"),
        ([*g, "on", "--reason", "r", "--for", "0m"], {}, "positive"),
        ([*g, "on", "--reason", "r", "--for", "99999999h"], {}, "--for"),
        ([*g, "on", "--reason", "r", "--until", "26:00"], {}, "time"),
        ([*g, "on", "--reason", "r", "--at", "tomorrow"], {}, "time"),
        ([*g, "on", "--reason", "r", "--at", "2001-01-01T00:00"], {}, "past"),
        ([*g, "on", "--reason", "r", "--at", "9999-12-31T23:59"], {}, "--at"),
        ([*g, "on", "--reason", "r", "--for", "10m", "--until", "23:00"], {}, "not both"),
        ([*g, "on", "--reason", "r", "--notices", str(tmp / "missing.toml")], {}, "--notices"),
        ([*g, "on", "--reason", "r", "--notices", str(binary)], {}, "--notices"),
        ([*g, "off", "--notices", str(folder)], {}, "--notices"),
        ([*g, "release"], {}, "NODE"),
        ([*g, "release", "web-9", "--reason", "dead"], {}, "unreachable"),
        ([*g, "wait", "--timeout", "soon"], {}, "--timeout"),
        ([*g, "wait", "--timeout", "0s"], {}, "--timeout"),
        ([*g, "history", "--limit", "0"], {}, "--limit"),
        ([*g, "history", "--limit", "many"], {}, "--limit"),
        (["plan"], {}, "--mock-minutes"),
        (["plan", "--mock-minutes", "x"], {}, "--mock-minutes"),
        (["plan", "--mock-minutes", "-1"], {}, "--mock-minutes"),
        (["plan", "--mock-minutes", "nan"], {}, "--mock-minutes"),
        (["plan", "--mock-minutes", "inf"], {}, "--mock-minutes"),
        (["plan", "--mock-minutes", "1e12"], {}, "--mock-minutes"),
        (["plan", "--mock-minutes", "5", "--slot-time", "25:00"], {}, "--slot-time"),
        (["plan", "--mock-minutes", "5", "--after", "someday"], {}, "--after"),
        (["plan", "--mock-minutes", "5", "--after", "9999-12-31T00:00"], {}, "--after"),
        ([*g, "plan", "--from-history", "Mock/../x"], {}, "--from-history"),
        ([*g, "announce", "--ics", str(tmp / "no" / "such" / "dir.ics")], {}, "--ics"),
        ([*g, "announce", "--notices", str(binary)], {}, "--notices"),
    ]
    return cases


def _agent_cases(tmp: Path) -> list[tuple[list[str], dict[str, str], str]]:
    good = tmp / "good.toml"
    good.write_text(f'[agent]\nnode = "n1"\nroles = ["web"]\nenvironment = "prod"\nstate_dir = "{tmp / "state"}"\n'
                    '[metrics]\nlisten = "127.0.0.1:0"\n')
    unwritable = tmp / "unwritable.toml"
    unwritable.write_text('[agent]\nnode = "n1"\nroles = ["web"]\nenvironment = "prod"\nstate_dir = "/proc/no-such/state"\n'
                          '[metrics]\nlisten = "127.0.0.1:0"\n')
    taken = tmp / "taken.toml"
    taken.write_text(f'[agent]\nnode = "n1"\nroles = ["web"]\nenvironment = "prod"\nstate_dir = "{tmp / "s2"}"\n'
                     '[metrics]\nlisten = "203.0.113.7:9464"\n')  # an address this machine does not have
    binary = tmp / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    bad = tmp / "bad.toml"
    bad.write_text("[agent\n")
    cases: list[tuple[list[str], dict[str, str], str]] = []
    for command in ("check-config", "run"):
        cases += [
            ([command, "--config", str(tmp / "missing.toml")], {}, "cannot read"),
            ([command, "--config", str(tmp)], {}, "cannot read"),
            ([command, "--config", str(binary)], {}, "UTF-8"),
            ([command, "--config", str(bad)], {}, "TOML"),
            ([command, "--config", str(good)], {"CONSUL_HTTP_ADDR": "127.0.0.1:85oo"}, "CONSUL_HTTP_ADDR"),
            ([command, "--config", str(good)], {"CONSUL_CACERT": str(tmp / "missing.pem")}, "CONSUL_CACERT"),
            ([command, "--config", str(good), "--bogus"], {}, "No such option"),
        ]
    cases += [
        (["run", "--config", str(unwritable)], {"CONSUL_HTTP_ADDR": UNREACHABLE}, "state"),
        (["run", "--config", str(taken)], {"CONSUL_HTTP_ADDR": UNREACHABLE}, "metrics"),
        (["nonsense"], {}, "No such command"),
    ]
    return cases


def _check(script: str, argv: list[str], env: dict[str, str], word: str) -> str | None:
    result = run_script(script, *argv, env=env, timeout=60)
    lines = result.stderr.strip().splitlines()
    problems = []
    if result.returncode != 2:
        problems.append(f"exit {result.returncode}")
    if "Traceback" in result.stderr or "Traceback" in result.stdout:
        problems.append("a traceback")
    if len(lines) != 1:
        problems.append(f"{len(lines)} lines on stderr")
    if "unexpected" in result.stderr:
        problems.append("an unexpected error (a bug)")
    if word.lower() not in result.stderr.lower():
        problems.append(f"no {word!r} in the message")
    return f"{script} {argv} {env}: {', '.join(problems)}\n{result.stderr}" if problems else None


@pytest.mark.parametrize("script", ["maintctl", "maintenance-agent"])
def test_every_bad_input_is_one_line_and_exit_2(script: str, tmp_path: Path) -> None:
    cases = _maintctl_cases(tmp_path) if script == "maintctl" else _agent_cases(tmp_path)
    with ThreadPoolExecutor(max_workers=4) as pool:
        failures = [f for f in pool.map(lambda case: _check(script, *case), cases) if f]
    assert not failures, "\n".join(failures)
