"""Consul connection settings resolve as the consul command resolves them: explicit, then CONSUL_*, then defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.clients.consul import ConsulGateway
from agent.config.connection import FLAG_NAMES, ConnectionSettingError, normalise_address, resolve
from agent.config.schema import from_mapping
from agent.core.errors import ConfigError


@pytest.mark.parametrize(("typed", "https", "address"), [
    ("127.0.0.1:8500", False, "http://127.0.0.1:8500"),
    ("consul.internal", False, "http://consul.internal:8500"),
    ("consul.internal", True, "https://consul.internal:8501"),
    ("https://consul.internal:8501", False, "https://consul.internal:8501"),
    ("http://[::1]:8500/", False, "http://[::1]:8500"),
])
def test_addresses_are_normalised(typed: str, https: bool, address: str) -> None:
    assert normalise_address(typed, https) == address


@pytest.mark.parametrize(("given", "address"), [("https://consul.internal", "https://consul.internal:8501"),
                                                ("consul.internal", "http://consul.internal:8500"),
                                                ("http://[::1]", "http://[::1]:8500")])
def test_the_gateway_takes_the_same_default_ports(given: str, address: str) -> None:
    assert ConsulGateway(given).address == address  # it used to take 8500 for https as well


@pytest.mark.parametrize("typed", ["127.0.0.1:39855x", "ftp://consul", "http://consul/v1", "http://consul:8500?x=1", "", "a b:1", "http://:8500"])
def test_bad_addresses_are_refused(typed: str) -> None:
    with pytest.raises(ValueError):
        normalise_address(typed)


def test_explicit_values_win_over_the_environment_which_wins_over_defaults(tmp_path: Path) -> None:
    ca, cert, key, token_file = (tmp_path / n for n in ("ca.pem", "cert.pem", "key.pem", "token"))
    for f in (ca, cert, key):
        f.write_text("pem")
    token_file.write_text("from-file\n")
    env = {"CONSUL_HTTP_ADDR": "https://consul.env:8501", "CONSUL_HTTP_TOKEN": "from-env", "CONSUL_CACERT": str(ca),
           "CONSUL_CLIENT_CERT": str(cert), "CONSUL_CLIENT_KEY": str(key), "CONSUL_TLS_SERVER_NAME": "server.dc1.consul",
           "CONSUL_HTTP_SSL_VERIFY": "false"}
    from_env = resolve(environ=env)
    assert (from_env.address, from_env.token, from_env.ca_file, from_env.cert_file, from_env.key_file) == (
        "https://consul.env:8501", "from-env", ca, cert, key)
    assert from_env.tls_server_name == "server.dc1.consul" and from_env.verify is False
    explicit = resolve(address="127.0.0.1:1", token_file=token_file, verify=True, environ=env)
    assert (explicit.address, explicit.token, explicit.verify) == ("http://127.0.0.1:1", "from-file", True)
    assert resolve(environ={**env, "CONSUL_HTTP_TOKEN_FILE": str(token_file)}).token == "from-file"  # the file wins, as in consul
    defaults = resolve(environ={})
    assert (defaults.address, defaults.token, defaults.ca_file, defaults.verify) == ("http://127.0.0.1:8500", None, None, True)


@pytest.mark.parametrize(("kwargs", "env", "message"), [
    ({"address": "x:y"}, {}, "--consul: 'x:y' has no valid port"),
    ({}, {"CONSUL_HTTP_ADDR": "x:y"}, "CONSUL_HTTP_ADDR: 'x:y' has no valid port"),
    ({"ca_file": Path("/no/such.pem")}, {}, "--ca-file: /no/such.pem does not exist"),
    ({}, {"CONSUL_CLIENT_CERT": "/etc/hostname"}, "give both --client-cert and --client-key"),
    ({}, {"CONSUL_HTTP_SSL_VERIFY": "maybe"}, "CONSUL_HTTP_SSL_VERIFY: 'maybe' is not true or false"),
    ({"token_file": Path("/no/such/token")}, {}, "--token-file: cannot read /no/such/token"),
    ({"token": "a\r\nX-Injected: 1"}, {}, "--token: the token contains a line break (CR or LF); a token is one line"),
    ({}, {"CONSUL_HTTP_TOKEN": "a\nb"}, "CONSUL_HTTP_TOKEN: the token contains a line break"),
    ({}, {"CONSUL_HTTP_TOKEN": "t\u00f6ken"}, "CONSUL_HTTP_TOKEN: the token contains 'ö' (U+00F6); a token is printable ASCII"),
])
def test_a_bad_setting_is_one_line_naming_where_it_came_from(kwargs: dict, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConnectionSettingError) as refused:
        resolve(**kwargs, environ=env, names=FLAG_NAMES)
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_the_agent_config_falls_back_to_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = {"agent": {"node": "n", "roles": ["web"], "environment": "prod", "state_dir": str(tmp_path)}}
    monkeypatch.setenv("CONSUL_HTTP_ADDR", "https://consul.env:8501")
    assert from_mapping(doc).consul.connection().address == "https://consul.env:8501"
    doc["consul"] = {"address": "http://127.0.0.1:8500", "tls_server_name": "server.dc1.consul"}
    connection = from_mapping(doc).consul.connection()
    assert (connection.address, connection.tls_server_name) == ("http://127.0.0.1:8500", "server.dc1.consul")


def test_a_config_token_a_header_cannot_carry_is_a_config_error_naming_its_key(tmp_path: Path) -> None:
    doc = {"agent": {"node": "n", "roles": ["web"], "environment": "prod", "state_dir": str(tmp_path)},
           "consul": {"token": "secret\nX-Injected: 1"}}
    with pytest.raises(ConfigError) as refused:
        from_mapping(doc, source="box.toml")
    assert refused.value.problems == ["consul.token: the token contains a line break (CR or LF); a token is one line"]
