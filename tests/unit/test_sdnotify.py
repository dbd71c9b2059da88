"""The systemd notify protocol, against a real unix datagram socket standing in for systemd."""

from __future__ import annotations

import socket
from pathlib import Path

from agent.daemon.local.sdnotify import SystemdNotifier


def test_messages_reach_the_notify_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        server.settimeout(2)
        notifier = SystemdNotifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "20000000"})
        assert notifier.enabled and notifier.watchdog_interval == 10.0
        notifier.ready("state=active")
        assert server.recv(1024) == b"READY=1\nSTATUS=state=active"
        notifier.watchdog()
        assert server.recv(1024) == b"WATCHDOG=1"
        notifier.stopping()
        assert server.recv(1024) == b"STOPPING=1"


def test_without_systemd_it_does_nothing() -> None:
    notifier = SystemdNotifier({})
    assert not notifier.enabled and notifier.watchdog_interval is None
    notifier.ready()  # no socket: no error
