"""install-files: what each role's box gets, idempotence, and supervisor's hook mapping markers to programs."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import pytest
from click.testing import CliRunner

from agent.cli.agent_main import cli
from agent.config.schema import from_mapping
from agent.core.errors import ConfigError
from agent.install.files import Layout, box_files, install
from agent.install.supervisor_holds import read_programs, write_holds
from demo.harness.agents import to_toml

AGENT = {"node": "box-1", "environment": "prod"}
LAYOUT = Layout(PurePosixPath("/etc/maintenance-agent/config.toml"), PurePosixPath("/opt/maintenance-agent/bin/maintenance-agent"))
EDGE = {"verify_maintenance": [{"name": "ui", "url": "http://127.0.0.1:1/"}], "verify_active": [{"name": "ui", "url": "http://127.0.0.1:1/"}]}


def _paths(**tables: object) -> set[str]:
    roles = [r for r in ("worker", "scheduler", "edge", "web") if r in tables or (r == "web" and not tables)]
    doc = {"agent": {**AGENT, "roles": roles}, **tables}
    return {str(f.path) for f in box_files(from_mapping(doc), LAYOUT)}


def test_each_role_gets_what_it_needs_and_nothing_more() -> None:
    common = {"/etc/systemd/system/maintenance-agent.service", "/etc/sysusers.d/maintenance-agent.conf"}
    assert _paths() == common
    assert _paths(worker={"backend": "systemd", "services": ["billing.service", "ledger@*.service"]}) == common | {
        "/etc/polkit-1/rules.d/50-maintenance-agent.rules",
        "/etc/systemd/system/billing.service.d/maintenance-agent-hold.conf",
        "/etc/systemd/system/ledger@.service.d/maintenance-agent-hold.conf"}
    assert _paths(worker={"backend": "supervisor", "services": ["billing"]}) == common | {
        "/etc/systemd/system/supervisor.service.d/maintenance-agent-holds.conf",
        "/etc/supervisor/conf.d/zz-maintenance-agent-holds.conf", "/etc/supervisor/conf.d/maintenance-agent.conf"}
    assert _paths(edge=EDGE) == common | {"/var/lib/maintenance-agent/haproxy/maintenance.map"}
    assert _paths(edge={**EDGE, "map_file": "/etc/haproxy/state/m.map"}) == common | {
        "/etc/haproxy/state/m.map", "/etc/systemd/system/maintenance-agent.service.d/edge-map.conf"}


def test_install_is_idempotent_keeps_live_state_and_removes_what_the_config_dropped(tmp_path: Path) -> None:
    worker = {"agent": {**AGENT, "roles": ["worker", "edge"]}, "edge": EDGE,
              "worker": {"backend": "systemd", "services": ["billing.service", "mailer.service"]}}
    first = install(box_files(from_mapping(worker), LAYOUT), tmp_path)
    assert all(line.startswith("wrote ") for line in first)
    live = tmp_path / "var/lib/maintenance-agent/haproxy/maintenance.map"
    live.write_text("state on\n")  # the agent switched it
    worker["worker"]["services"] = ["billing.service"]  # type: ignore[index]
    second = install(box_files(from_mapping(worker), LAYOUT), tmp_path)
    assert "kept (live state) /var/lib/maintenance-agent/haproxy/maintenance.map" in second
    assert "unchanged /etc/systemd/system/maintenance-agent.service" in second
    assert "removed /etc/systemd/system/mailer.service.d/maintenance-agent-hold.conf (no longer in the config)" in second
    assert live.read_text() == "state on\n" and not (tmp_path / "etc/systemd/system/mailer.service.d/maintenance-agent-hold.conf").exists()
    assert "mailer" not in (tmp_path / "etc/polkit-1/rules.d/50-maintenance-agent.rules").read_text()


def test_the_command_refuses_a_config_that_does_not_validate(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(to_toml({"agent": {**AGENT, "roles": ["worker"]}, "worker": {"backend": "systemd", "services": ["billing"]}}))
    result = CliRunner().invoke(cli, ["install-files", "--config", str(config), "--root", str(tmp_path / "root")])
    assert result.exit_code == 2 and "worker.services: 'billing': expected a unit name with its type" in result.output
    assert not (tmp_path / "root").exists()


def test_the_command_names_the_installed_executable_in_the_unit(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(to_toml({"agent": {**AGENT, "roles": ["web"]}}))
    result = CliRunner().invoke(cli, ["install-files", "--config", str(config), "--root", str(tmp_path / "root"),
                                      "--executable", "/opt/x/bin/maintenance-agent"])
    assert result.exit_code == 0, result.output
    unit = (tmp_path / "root/etc/systemd/system/maintenance-agent.service").read_text()
    assert f"ExecStart=/opt/x/bin/maintenance-agent run --config {config}" in unit


SUPERVISOR_CONF = """[unix_http_server]
file=/var/run/supervisor.sock ; the socket
[include]
files = conf.d/*.conf
"""


@pytest.fixture
def supervisor_conf(tmp_path: Path) -> Path:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "supervisord.conf").write_text(SUPERVISOR_CONF)
    (tmp_path / "conf.d/workers.conf").write_text(
        "[program:billing]\ncommand=x\nnumprocs=2\nprocess_name=%(program_name)s_%(process_num)02d\n"
        "[program:alpha]\ncommand=x\n[program:beta]\ncommand=x\n[group:pool]\nprograms=alpha, beta ; two of them\n")
    return tmp_path / "supervisord.conf"


def test_supervisor_markers_become_autostart_false_for_exactly_their_programs(supervisor_conf: Path, tmp_path: Path) -> None:
    known = read_programs(supervisor_conf)
    assert known.programs == {"billing", "alpha", "beta"} and known.groups == {"pool": ["alpha", "beta"]}
    markers = tmp_path / "holds"
    markers.mkdir()
    for name in ("billing:billing_00", "billing:billing_01", "pool:alpha", "ghost:ghost"):
        (markers / name).write_text("{}")
    output = tmp_path / "run/holds.conf"
    held, ignored = write_holds(markers, supervisor_conf, output)
    assert (held, ignored) == (["alpha", "billing"], ["ghost:ghost"])
    text = output.read_text()
    assert "[program:alpha]\nautostart=false" in text and "[program:billing]\nautostart=false" in text and "beta" not in text


def test_no_markers_means_an_empty_holds_file(supervisor_conf: Path, tmp_path: Path) -> None:
    held, ignored = write_holds(tmp_path / "no-such-dir", supervisor_conf, tmp_path / "holds.conf")
    assert held == ignored == [] and "[program:" not in (tmp_path / "holds.conf").read_text()


def test_a_symlinked_marker_directory_is_not_read_by_the_root_hook(supervisor_conf: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "billing:billing_00").write_text("{}")
    (tmp_path / "holds").symlink_to(elsewhere)
    held, ignored = write_holds(tmp_path / "holds", supervisor_conf, tmp_path / "holds.conf")
    assert held == [] and ignored == [f"{tmp_path / 'holds'} (a symbolic link, not read)"]


def test_a_state_dir_systemd_would_not_see_or_read_differently_is_refused() -> None:
    with pytest.raises(ValueError, match="PrivateTmp=yes"):
        box_files(from_mapping({"agent": {**AGENT, "roles": ["worker"], "state_dir": "/tmp/ma"},
                                "worker": {"backend": "systemd", "services": ["billing.service"]}}), LAYOUT)
    for bad in ("var/lib/ma", "/var/lib/../ma", "/var/lib/ma%n", "/var/lib/ma\nExecStartPre=/bin/sh"):
        with pytest.raises(ConfigError, match="agent.state_dir: expected an absolute, normalised path"):
            from_mapping({"agent": {**AGENT, "roles": ["web"], "state_dir": bad}})
    with pytest.raises(ConfigError, match="edge.map_file: expected an absolute, normalised path"):
        from_mapping({"agent": {**AGENT, "roles": ["edge"]}, "edge": {**EDGE, "map_file": "/etc/haproxy/m.map\n[Service]"}})


def test_install_files_writes_through_no_link_another_user_owns(tmp_path: Path) -> None:
    edge = from_mapping({"agent": {**AGENT, "roles": ["edge"]}, "edge": EDGE})
    (tmp_path / "var/lib/maintenance-agent").mkdir(parents=True)
    (tmp_path / "target").mkdir()
    link = tmp_path / "var/lib/maintenance-agent/haproxy"
    link.symlink_to(tmp_path / "target")
    os.lchown(link, 4242, 4242)  # as the agent's user would have made it
    with pytest.raises(ValueError, match="is a symbolic link owned by uid 4242, neither root nor this user"):
        install(box_files(edge, LAYOUT), tmp_path)
    assert list((tmp_path / "target").iterdir()) == []
