"""Config validation: every problem named with its dotted key path and what was expected."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from agent.config.schema import load
from agent.core.errors import ConfigError
from agent.core.model import Role

PROJECT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_example_config_is_valid_and_the_defaults_it_shows_are_the_real_ones() -> None:
    """config.toml shows defaults as commented lines (``# wait_seconds = 60``): they must be what the agent uses."""
    config = load(PROJECT / "config.toml")
    assert (config.agent.roles, config.agent.environment, config.consul.prefix) == ([Role.WEB], "prod", "maintenance")
    section, checked = "", []
    for line in (PROJECT / "config.toml").read_text().splitlines():
        if line.startswith("["):
            section = line.strip("[]")
            continue
        shown = re.match(r"# (\w+) = (.+?)\s*(#.*)?$", line)
        if not shown or shown.group(1) == "node":  # the node's default is the host name
            continue
        key, value = shown.group(1), tomllib.loads(f"v = {shown.group(2)}")["v"]
        actual = getattr(getattr(config, section), key)
        if actual is None:
            continue  # an optional setting shown as an example, not a default
        assert actual == value, f"config.toml shows [{section}] {key} = {value!r}, the agent uses {actual!r}"
        checked.append(key)
    assert checked == ["order", "resync_seconds", "retry_max_seconds", "wait_seconds", "session_ttl_seconds"]


def test_minimal_config_gets_defaults(tmp_path: Path) -> None:
    config = load(write(tmp_path, '[agent]\nroles = ["web"]\nenvironment = "mock"\n'))
    assert config.agent.node
    assert config.consul.prefix == "maintenance"
    assert config.env_prefix == "maintenance/mock"
    assert config.agent.order == [Role.EDGE, Role.WEB, Role.WORKER, Role.SCHEDULER]


BROKEN = """
[agent]
roles = ["web", "database"]
environment = "Prod!"
colour = "blue"
order = ["edge", "web", "web", "worker"]

[consul]
address = "ftp://consul"
wait_seconds = "sixty"
token = "a"
token_file = "/nonexistent"

[metrics]
listen = "everywhere"

[web]
smoke = [{ name = "ui", url = "localhost/" }]
"""


def test_every_problem_is_reported_with_its_key_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, BROKEN))
    text = str(info.value)
    assert str(tmp_path / "config.toml") in text
    for expected in [
        "agent.roles.1: 'database' is not one of 'edge', 'web', 'worker' or 'scheduler'",
        "agent.environment:",
        "agent.colour: unknown key",
        "agent.order: the order names a role twice (a cycle)",
        "consul.address: 'ftp://consul' is not an address like http(s)://host:port",
        "consul.wait_seconds: Input should be a valid integer",
        "metrics.listen: expected the metrics listen address as host:port",
        "web.smoke.0.url: expected an http(s) URL",
    ]:
        assert expected in text, f"missing {expected!r} in:\n{text}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[agent]\nenvironment = 'x'\n", "agent.roles: required key is missing"),
        ("[agent]\nroles = []\nenvironment = 'x'\n", "agent.roles: List should have at least 1 item"),
        ("[agent]\nroles = ['web', 'web']\nenvironment = 'x'\n", "agent.roles: a role is listed twice"),
        ("[agent]\nroles = ['web']\nenvironment = 'x'\norder = ['web']\n", "must name every role"),
        ("[agent]\nroles = ['web']\nenvironment = 'x'\n[web]\nsmoke = [{ name = 'ui', url = 'http://h/', expect_body = '' }]\n",
         "web.smoke.0.expect_body: expected a text the body must contain"),
        ("[agent]\nroles = ['web']\nenvironment = 'x'\n[consul]\naddress = 'http://300.1.1.1:8500'\n", "consul.address"),
        ("[agent]\nroles = ['web']\nenvironment = 'x'\n[consul]\ncert_file = '/c'\n", "cert_file and key_file go together"),
        ("[agent\nroles=", "not valid TOML"),
        ("[agent]\nroles = ['web']\nenvironment = 'x'\n[consul]\ntoken = 'a'\ntoken_file = '/t'\n", "consul: set either token or token_file, not both"),
        ("[agent]\nroles = 'web'\nenvironment = 'x'\n", "agent.roles"),
    ],
)
def test_single_problems(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, text))
    assert expected in str(info.value)


def test_missing_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the file"):
        load(tmp_path / "nope.toml")
    bad = tmp_path / "bin.toml"
    bad.write_bytes(b"\xff\xfe[agent]")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load(bad)


def test_token_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "from-env")
    base = "[agent]\nroles = ['web']\nenvironment = 'x'\n"
    assert load(write(tmp_path, base)).consul.resolved_token() == "from-env"
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    assert load(write(tmp_path, base + f"[consul]\ntoken_file = '{token_file}'\n")).consul.resolved_token() == "from-file"
    assert load(write(tmp_path, base + "[consul]\ntoken = 'inline'\n")).consul.resolved_token() == "inline"


def test_check_config_command_exit_codes(tmp_path: Path) -> None:
    good = subprocess.run([sys.executable, "-m", "agent", "check-config", "--config", str(PROJECT / "config.toml")],
                          capture_output=True, text=True, cwd=PROJECT)
    assert good.returncode == 0, good.stderr
    assert "ok" in good.stdout
    bad = subprocess.run([sys.executable, "-m", "agent", "check-config", "--config", str(write(tmp_path, BROKEN))],
                         capture_output=True, text=True, cwd=PROJECT)
    assert bad.returncode == 2
    assert "agent.colour: unknown key" in bad.stderr and "metrics.listen" in bad.stderr


def test_a_problem_never_echoes_a_secret(tmp_path: Path) -> None:
    """A table-wide problem would show the whole table; a bad chat URL is itself the secret."""
    path = write(tmp_path, """
[agent]
node = "w1"
environment = "prod"
roles = ["web"]
[notices.chat]
url = "hxxp://hooks.slack.example/services/T0/B0/CHATSECRETTOKEN"
[[notices.partners]]
name = "acme"
url = "https://acme.example/hook"
secret = "TOPSECRET-hmac-key-123"
secret_file = "/etc/hostname"
""")
    with pytest.raises(ConfigError) as failed:
        load(path)
    text = "\n".join(failed.value.problems)
    assert "notices.partners[acme]: a webhook (url) needs exactly one of secret or secret_file" in text
    assert "notices.chat.url: expected an http(s) URL" in text
    assert "TOPSECRET" not in text and "CHATSECRETTOKEN" not in text
