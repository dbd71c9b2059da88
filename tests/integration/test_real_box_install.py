"""The README's "Install on a box", run line by line as it is written, in a real box, from the wheels an operator builds.

Nothing is prepared in the box but what the README says to copy there
(``wheels/`` and ``config.toml`` in ``/root``) and the worker services of the
box itself. The box then enters and leaves a window.
"""

from __future__ import annotations

import itertools
import re
import shutil
from pathlib import Path

from demo.harness.agent_box import AgentBox, put_intent, recording_unit
from demo.harness.agents import to_toml
from demo.harness.consul import ConsulAgentProcess
from demo.harness.processes import PROJECT
from demo.harness.systemd_box import booted
from tests.fixtures.real_box import box_wheels  # noqa: F401

_boxes = itertools.count(1)
MARKER = "<!-- install-on-a-box:"


def readme_install_block() -> list[str]:
    text = (PROJECT / "README.md").read_text()
    after = text[text.index(MARKER):]
    block = re.search(r"```sh\n(.*?)```", after, re.S)
    assert block, "the README's install block is gone"
    return [line for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]


def test_the_readme_install_commands_work_on_a_fresh_box(box_wheels: list[Path], consul_server: ConsulAgentProcess, environment: str) -> None:
    lines = readme_install_block()
    assert lines[-1] == "systemctl enable --now maintenance-agent" and any("install-files" in line for line in lines)
    with booted(f"install{next(_boxes)}") as box:
        assert not any(box.path("/opt/maintenance-agent").iterdir()), "a fresh box: nothing installed"
        box.write("/etc/systemd/system/billing-worker.service", recording_unit("billing-worker.service"))
        box.systemctl("daemon-reload")
        box.systemctl("enable", "--now", "billing-worker.service")
        wheels = box.path("/root/wheels")
        wheels.mkdir(parents=True)
        for wheel in box_wheels:
            shutil.copy2(wheel, wheels / wheel.name)
        agent_box = AgentBox(box, consul_server.address, environment, box.name)
        box.write("/root/config.toml", to_toml(agent_box.config(["worker"], worker={"backend": "systemd", "services": ["billing-worker.service"]})))

        for line in lines:
            box.run("sh", "-c", f"cd /root && {line}", timeout=300)

        agent_box.wait_active()
        agent_box.wait_status(state="active")
        on = put_intent(consul_server.address, environment, "maintenance")
        agent_box.wait_status(state="maintenance", intent_index=on)
        assert agent_box.active("billing-worker.service") == {"billing-worker.service": "inactive"}
        assert agent_box.box.run("stat", "-c", "%U", "/var/lib/maintenance-agent").stdout.strip() == "maintenance-agent"
        off = put_intent(consul_server.address, environment, "active")
        agent_box.wait_status(state="active", intent_index=off)
        assert agent_box.active("billing-worker.service") == {"billing-worker.service": "active"}
