"""A worker box whose services run under Debian's supervisor.service, in a real box.

Debian ships supervisord's socket ``chmod=0700`` (root only): the agent's user
reaches it only through what ``install-files`` writes (the socket's group), and
a power cut mid-window starts no held program, because supervisor.service's
start hook (``supervisor-holds``) turns autostart off for exactly those.
"""

from __future__ import annotations

import itertools
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.figures import record
from demo.harness.agent_box import STARTS_LOG, AgentBox, put_intent
from demo.harness.consul import ConsulAgentProcess
from demo.harness.processes import wait_until
from demo.harness.systemd_box import booted
from tests.fixtures.real_box import box_layer, box_wheels  # noqa: F401

_boxes = itertools.count(1)
PROGRAMS = f"""\
[program:billing]
command=/bin/sh -c 'echo billing >> {STARTS_LOG}; exec sleep infinity'
autostart=true

[program:mailer]
command=/bin/sh -c 'echo mailer >> {STARTS_LOG}; exec sleep infinity'
autostart=true

[program:cleanup]
command=/bin/sh -c 'echo cleanup >> {STARTS_LOG}; exec sleep infinity'
autostart=false

[program:unrelated]
command=/bin/sh -c 'echo unrelated >> {STARTS_LOG}; exec sleep infinity'
autostart=true
"""


BEFORE = {"billing": "RUNNING", "mailer": "RUNNING", "cleanup": "STOPPED", "unrelated": "RUNNING"}


def supervisor_states(box: AgentBox) -> dict[str, str]:
    lines = box.box.run("supervisorctl", "status", check=False).stdout.splitlines()
    return {line.split()[0]: line.split()[1] for line in lines if line.strip()}


@pytest.fixture
def supervisor_box(box_layer: Path, consul_server: ConsulAgentProcess, environment: str) -> Iterator[AgentBox]:
    with booted(f"sup{next(_boxes)}", units=("supervisor.service",), layers=[box_layer]) as box:
        box.write("/etc/supervisor/conf.d/workers.conf", PROGRAMS)
        box.run("mkdir", "-p", "/var/log/supervisor")
        box.systemctl("enable", "--now", "supervisor.service")
        agent_box = AgentBox(box, consul_server.address, environment, box.name)
        doc = agent_box.config(["worker"], worker={"backend": "supervisor", "services": ["billing", "mailer", "cleanup"],
                                                  "timeout_seconds": 30, "supervisor": {"url": "unix:///var/run/supervisor.sock"}})
        agent_box.install(doc, enable=False)
        box.systemctl("restart", "supervisor")  # README: its socket's group and its start hook take effect
        wait_until(lambda: supervisor_states(agent_box) == BEFORE, 30, what="supervisord's programs up")
        box.systemctl("enable", "--now", "maintenance-agent")
        agent_box.wait_active()
        agent_box.wait_status(state="active")
        yield agent_box


@pytest.mark.slow
def test_the_agent_reaches_supervisord_only_through_the_socket_group_install_files_gave_it(supervisor_box: AgentBox) -> None:
    mode = supervisor_box.box.run("stat", "-c", "%A %U %G", "/run/supervisor.sock").stdout.split()
    assert mode == ["srwxrwx---", "root", "maintenance-agent"]
    said = supervisor_box.box.run(*shlex.split("runuser -u nobody -- supervisorctl status"), check=False)
    assert "Permission denied" in said.stdout + said.stderr, "anyone else is refused, as Debian ships it"


@pytest.mark.slow
def test_a_power_cut_mid_window_starts_no_held_program(supervisor_box: AgentBox) -> None:
    on = put_intent(supervisor_box.consul_address, supervisor_box.environment, "maintenance")
    supervisor_box.wait_status(state="maintenance", intent_index=on)
    assert supervisor_states(supervisor_box) == {"billing": "STOPPED", "mailer": "STOPPED", "cleanup": "STOPPED", "unrelated": "RUNNING"}

    starts = supervisor_box.power_cut_mid_window(on)
    # supervisord starts its autostart programs in its own time: once the unheld one ran, the held ones had their turn.
    wait_until(lambda: "unrelated" in supervisor_box.starts()[starts:], 30, what="supervisord to start the program nobody held")
    after = supervisor_box.starts()[starts:]
    assert after == ["unrelated"], f"after the power cut, only the program nobody held started: {after}"
    hook = supervisor_box.box.journal("-u", "supervisor", "-o", "cat")
    assert "supervisor-holds: 3 program(s) held for a maintenance window: billing, cleanup, mailer" in hook
    assert supervisor_states(supervisor_box)["billing"] == "STOPPED"

    off = put_intent(supervisor_box.consul_address, supervisor_box.environment, "active")
    supervisor_box.wait_status(state="active", intent_index=off)
    assert supervisor_states(supervisor_box) == BEFORE
    assert supervisor_box.box.path("/var/lib/maintenance-agent/holds/supervisor").exists()
    assert list(supervisor_box.box.path("/var/lib/maintenance-agent/holds/supervisor").iterdir()) == []
    record("power cut mid-window, real box, Debian's supervisor.service", faults=1,
           detail="3 programs held; 0 of them started after the boot, the unheld one did")
