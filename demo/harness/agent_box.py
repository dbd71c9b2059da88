"""A real box with the agent installed as an operator installs it: the README's steps, and what tests read back.

The box is ``demo.harness.systemd_box.SystemdBox`` (systemd as PID 1, D-Bus,
polkit, journald); the package is the venv the README makes under
``/opt/maintenance-agent`` (``demo.harness.box_install``); ``AgentBox.install``
runs the README's install steps after the package, inside the box: the
config, ``install-files``, ``systemd-sysusers``, ``daemon-reload``, polkit
picking up its rule, ``systemctl enable --now maintenance-agent``. Used by
the real-box tests and ``bench/box_footprint.py``.
"""

from __future__ import annotations

import json
import shlex
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from demo.harness.agents import to_toml
from demo.harness.processes import free_port, wait_until
from demo.harness.systemd_box import SystemdBox

AGENT = "/opt/maintenance-agent/bin/maintenance-agent"
CONFIG = "/etc/maintenance-agent/config.toml"
STARTS_LOG = "/var/log/box-starts.log"
USER = "maintenance-agent"


def recording_unit(name: str, command: str = "/bin/sleep infinity", wanted_by: str = "multi-user.target", extra: str = "") -> str:
    """A unit that appends its name to ``STARTS_LOG`` every time it really starts (a start a condition skipped leaves nothing)."""
    install = f"\n[Install]\nWantedBy={wanted_by}\n" if wanted_by else ""
    return (f"[Unit]\nDescription=test unit {name}\n\n[Service]\n"
            f"ExecStartPre=/bin/sh -c 'echo %n >> {STARTS_LOG}'\nExecStart={command}\n{extra}{install}")


@dataclass
class AgentBox:
    """One booted box, the agent installed on it from ``config``."""

    box: SystemdBox
    consul_address: str
    environment: str
    node: str
    metrics_port: int = field(default_factory=free_port)

    def config(self, roles: list[str], **tables: Any) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "agent": {"node": self.node, "roles": roles, "environment": self.environment, "resync_seconds": 2, "retry_max_seconds": 2},
            "consul": {"address": self.consul_address, "session_ttl_seconds": 10, "wait_seconds": 30},
            "metrics": {"listen": f"127.0.0.1:{self.metrics_port}"},
        }
        doc.update(tables)
        return doc

    def install(self, doc: dict[str, Any], enable: bool = True) -> None:
        """The README's steps after the package: config, install-files, sysusers, reload, polkit, enable --now."""
        self.box.write("/root/config.toml", to_toml(doc))
        for line in (f"install -D -m 0640 /root/config.toml {CONFIG}",
                     f"{AGENT} install-files --config {CONFIG} --root /",
                     "systemd-sysusers",
                     f"chgrp {USER} {CONFIG}",
                     "systemctl daemon-reload",
                     "systemctl try-restart polkit"):
            self.box.run(*shlex.split(line))
        if enable:
            self.box.systemctl("enable", "--now", "maintenance-agent")
            self.wait_active()

    def power_cut_mid_window(self, intent_index: int) -> int:
        """Cut the box's power, boot it with its disk, wait until its agent reports maintenance for ``intent_index``
        again; how many test-unit starts were logged before the cut (``starts()[n:]`` is what started after it)."""
        starts = len(self.starts())
        self.box.power_cut()
        self.box.boot()
        self.wait_active()
        self.wait_status(state="maintenance", intent_index=intent_index)
        return starts

    def wait_active(self, timeout: float = 60.0) -> None:
        wait_until(lambda: self.box.systemctl("is-active", "maintenance-agent", check=False).stdout.strip() == "active",
                   timeout, what=f"maintenance-agent active in box {self.box.name}")

    def status(self) -> dict[str, Any] | None:
        url = f"{self.consul_address}/v1/kv/maintenance/{self.environment}/status/{self.node}?raw"
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return json.loads(answer.read())  # type: ignore[no-any-return]
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise

    def wait_status(self, timeout: float = 60.0, **expected: Any) -> dict[str, Any]:
        def matches() -> dict[str, Any] | None:
            found = self.status()
            return found if found and all(found.get(k) == v for k, v in expected.items()) else None
        return wait_until(matches, timeout, interval=0.2, what=f"{self.node} to report {expected} (last: {self.status()})")  # type: ignore[return-value]

    def wait_until_status(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 60.0) -> dict[str, Any]:
        def matches() -> dict[str, Any] | None:
            found = self.status()
            return found if found and predicate(found) else None
        return wait_until(matches, timeout, interval=0.2, what=f"{self.node}'s status (last: {self.status()})")  # type: ignore[return-value]

    def starts(self) -> list[str]:
        """Every start of a test unit so far, in order."""
        path = self.box.path(STARTS_LOG)
        return path.read_text().split() if path.exists() else []

    def active(self, *units: str) -> dict[str, str]:
        return {u: self.box.systemctl("is-active", u, check=False).stdout.strip() for u in units}

    def enabled(self, *units: str) -> dict[str, str]:
        return {u: self.box.systemctl("is-enabled", u, check=False).stdout.strip() for u in units}

    def held(self) -> set[str]:
        folder = self.box.path("/var/lib/maintenance-agent/holds/systemd")
        return {p.name for p in folder.iterdir()} if folder.exists() else set()

    def as_agent(self, *systemctl_args: str) -> tuple[int, str]:
        """``systemctl`` run as the agent's user: what polkit lets it do."""
        result = self.box.systemctl("--no-ask-password", *systemctl_args, user=USER, check=False)
        return result.returncode, (result.stdout + result.stderr).strip()


def put_intent(consul_address: str, environment: str, value: str) -> int:
    """Write the desired key; the new ModifyIndex (the intent's identity)."""
    key = f"maintenance/{environment}/desired"
    request = urllib.request.Request(f"{consul_address}/v1/kv/{key}", data=value.encode(), method="PUT")
    with urllib.request.urlopen(request, timeout=5):
        pass
    with urllib.request.urlopen(f"{consul_address}/v1/kv/{key}", timeout=5) as answer:
        return int(json.loads(answer.read())[0]["ModifyIndex"])


def edge_config(box: AgentBox, front: str) -> dict[str, Any]:
    """An edge box's config: verify through the public frontend ``front`` (the page, the API's JSON, the backend)."""
    from demo.harness.haproxy import BACKEND_MARKER, JSON_MARKER, PAGE_MARKER

    check = {"timeout_seconds": 3}
    return box.config(["edge"], edge={
        "verify_attempts": 5, "verify_interval_seconds": 0.3,
        "verify_maintenance": [{"name": "ui", "url": f"{front}/", "expect_status": 503, "expect_body": PAGE_MARKER, **check},
                               {"name": "api", "url": f"{front}/api/x", "expect_status": 503, "expect_body": JSON_MARKER, **check}],
        "verify_active": [{"name": "ui", "url": f"{front}/", "expect_status": 200, "expect_body": BACKEND_MARKER, **check}]})


def serve_haproxy(box: SystemdBox, front: str, backend_port: int) -> None:
    """Debian's haproxy.service in the box with the shipped haproxy.cfg and files (deploy/haproxy/README.md), ports in
    ``/etc/default/haproxy``. Run after ``install-files`` and ``systemd-sysusers``: the config names the agent's group."""
    import shutil

    from demo.harness.haproxy import SHIPPED

    shutil.copyfile(SHIPPED / "haproxy.cfg", box.path("/etc/haproxy/haproxy.cfg"))
    shutil.copytree(SHIPPED / "maintenance", box.path("/etc/haproxy/maintenance"), dirs_exist_ok=True)
    box.write("/etc/default/haproxy", f"FRONT_BIND={front.removeprefix('http://')}\nBACKEND_APP=127.0.0.1:{backend_port}\n")
    box.systemctl("enable", "--now", "haproxy")

    def answers() -> bool:
        try:
            with urllib.request.urlopen(f"{front}/haproxy-health", timeout=2):
                return True
        except OSError:
            return False
    wait_until(answers, 30, what=f"HAProxy in box {box.name} answering on {front}")
