"""A whole window over TLS: a real HTTPS-only Consul with a private CA, the agent and maintctl set up by CONSUL_* alone."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from demo.harness.agents import to_toml
from demo.harness.processes import ManagedProcess, wait_until
from tests.fixtures.consul_tls import Certificates, TlsConsul, make_certificates
from tests.fixtures.scripts import run_script, script_argv, script_env


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_consul(tmp_path_factory: pytest.TempPathFactory, certificates: Certificates) -> Iterator[TlsConsul]:
    server = TlsConsul(tmp_path_factory.mktemp("consul-tls"), certificates).start()
    try:
        yield server
    finally:
        server.stop()


def _maintctl(consul: TlsConsul, *args: str, **env: str) -> tuple[int, str, str]:
    result = run_script("maintctl", *args, env={**consul.environment(), "MAINTCTL_ENV": "tls", "MAINTCTL_TZ": "UTC", **env})
    return result.returncode, result.stdout, result.stderr


def test_a_whole_window_over_tls_with_only_the_consul_environment(tls_consul: TlsConsul, tmp_path: Path) -> None:
    config = tmp_path / "web-tls.toml"
    config.write_text(to_toml({
        "agent": {"node": "web-tls", "roles": ["web"], "environment": "tls", "state_dir": str(tmp_path / "state"),
                  "resync_seconds": 2, "retry_max_seconds": 2},
        "consul": {"wait_seconds": 10, "session_ttl_seconds": 10},  # no address, no TLS keys: the environment has them
        "metrics": {"listen": "127.0.0.1:0"},
    }))
    checked = run_script("maintenance-agent", "check-config", "--config", str(config), env=tls_consul.environment())
    assert checked.returncode == 0, checked.stderr
    assert f"consul {tls_consul.address}, CA {tls_consul.certificates.ca})" in checked.stdout  # where it will connect, from the environment
    agent = ManagedProcess([*script_argv("maintenance-agent"), "run", "--config", str(config)], tmp_path / "agent.log",
                           env=script_env(tls_consul.environment()))
    try:
        wait_until(lambda: (tls_consul.kv_get_json("maintenance/tls/status/web-tls") or {}).get("state") == "active", 30.0,
                   what="the agent reporting over TLS")
        code, out, err = _maintctl(tls_consul, "on", "--reason", "tls window", "--for", "10m")
        assert code == 0, err
        code, out, err = _maintctl(tls_consul, "wait", "--timeout", "30s")
        assert code == 0, (out, err)
        code, out, err = _maintctl(tls_consul, "status", "--json")
        doc = json.loads(out)
        assert code == 0 and doc["phase"] == "maintenance" and doc["boxes"][0]["node"] == "web-tls", (out, err)
        assert _maintctl(tls_consul, "off", "--reason", "done")[0] == 0
        code, out, err = _maintctl(tls_consul, "wait", "--timeout", "30s")
        assert code == 0, (out, err)
        [record] = json.loads(_maintctl(tls_consul, "history", "--json")[1])
        assert record["maintenance_reached"] and record["active_reached"]
    finally:
        agent.stop()
    assert "Traceback" not in agent.output()


def test_a_wrong_ca_a_missing_client_certificate_and_a_wrong_server_name_are_one_line_each(
        tls_consul: TlsConsul, tmp_path: Path) -> None:
    other = make_certificates(tmp_path / "other-ca")
    code, out, err = _maintctl(tls_consul, "status", CONSUL_CACERT=str(other.ca))
    assert code == 2 and out == ""
    assert err.startswith(f"maintctl: error: Consul at {tls_consul.address} unreachable")
    assert "TLS: certificate verify failed" in err and "CONSUL_CACERT" in err
    assert len(err.strip().splitlines()) == 1

    code, _, err = _maintctl(tls_consul, "status", CONSUL_CLIENT_CERT="", CONSUL_CLIENT_KEY="")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "TLS" in err, err

    code, _, err = _maintctl(tls_consul, "status", CONSUL_TLS_SERVER_NAME="consul.example.org")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "hostname mismatch" in err, err
    assert _maintctl(tls_consul, "status", "--tls-server-name", "server.dc1.consul")[0] in (0, 1)  # the name the cert carries

    code, _, err = _maintctl(tls_consul, "status", CONSUL_CACERT=str(tmp_path / "missing.pem"))
    assert code == 2 and err.strip() == f"maintctl: error: CONSUL_CACERT: {tmp_path / 'missing.pem'} does not exist or is not a file"

    code, _, err = _maintctl(tls_consul, "--ca-file", str(other.ca), "status")
    assert code == 2 and "certificate verify failed" in err  # the flag wins over CONSUL_CACERT


def test_the_agent_refuses_a_bad_consul_environment_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(to_toml({"agent": {"node": "n", "roles": ["web"], "environment": "tls", "state_dir": str(tmp_path)}}))
    bad = run_script("maintenance-agent", "check-config", "--config", str(config), env={"CONSUL_HTTP_ADDR": "127.0.0.1:85oo"})
    assert bad.returncode == 2
    assert "CONSUL_HTTP_ADDR: '127.0.0.1:85oo' has no valid port" in bad.stderr and "Traceback" not in bad.stderr
