"""A real supervisord for integration tests, in a temp dir, always stopped by its PID.

``supervisord`` (the pytest fixture) starts ``/usr/bin/supervisord -n`` with a
generated config: a unix socket in a short temp dir, an authenticated inet
server on a free port, and the programs in ``PROGRAMS``. Teardown stops
supervisord by its PID and then kills, by PID, any program it left behind.
The pytest fixture ``supervisord`` (in ``tests/fixtures/supervisor.py``) is built on ``SupervisordLauncher``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from demo.harness.processes import ManagedProcess, free_port, require_binary, wait_until

HTTP_USER = "maint"
HTTP_PASSWORD = "s3cret"

_LOOP = f"{sys.executable} -c 'while True: __import__(\"time\").sleep(0.2)'"
# Takes 3 s to stop after SIGTERM (a worker finishing its batch): long enough to be seen STOPPING.
_SLOW_TO_STOP = f"{sys.executable} -c 'import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: (time.sleep(3), sys.exit(0))); time.sleep(1000)'"
_IGNORES_TERM = f"{sys.executable} -c 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(1000)'"

PROGRAMS: dict[str, dict[str, str]] = {
    "alpha": {"command": "sleep 1000"},
    "beta": {"command": _LOOP},
    # Stopped before the window: must still be stopped afterwards.
    "gamma": {"command": "sleep 1000", "autostart": "false"},
    # Ignores SIGTERM; supervisord SIGKILLs it after stopwaitsecs (used to make a stop time out).
    "stubborn": {"command": _IGNORES_TERM, "stopwaitsecs": "3"},
    # Dies at once with a message: a start that fails.
    "crasher": {"command": "sh -c 'echo boom: cannot open queue >&2; exit 3'", "autostart": "false", "startsecs": "1", "startretries": "0"},
    # Started by the tests that need it: stops slowly (STOPPING for 3 s); RUNNING only once its handler is set (startsecs).
    "slowstop": {"command": _SLOW_TO_STOP, "autostart": "false", "stopwaitsecs": "20", "startsecs": "2"},
    "pool_a": {"command": "sleep 1000"},
    "pool_b": {"command": _LOOP},
}
GROUPS = {"pool": ["pool_a", "pool_b"]}


@dataclass
class Supervisord:
    """A running supervisord: where to reach it and how to look at it independently."""

    directory: Path
    config: Path
    socket: Path
    http_port: int
    process: ManagedProcess

    @property
    def unix_url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [require_binary("supervisorctl"), "-c", str(self.config), *args],
            capture_output=True, text=True, timeout=30,
        )

    def states(self) -> dict[str, str]:
        """``group:name`` → state, as ``supervisorctl status`` reports it (not through the code under test)."""
        found: dict[str, str] = {}
        for line in self.ctl("status").stdout.splitlines():
            match = re.match(r"^(\S+)\s+([A-Z]+)", line)
            if match:
                name = match.group(1) if ":" in match.group(1) else f"{match.group(1)}:{match.group(1)}"
                found[name] = match.group(2)
        return found

    def running(self) -> set[str]:
        return {name for name, state in self.states().items() if state == "RUNNING"}

    def pids(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for line in self.ctl("status").stdout.splitlines():
            match = re.match(r"^(\S+)\s+RUNNING\s+pid (\d+)", line)
            if match:
                found[match.group(1)] = int(match.group(2))
        return found


def _config_text(directory: Path, socket: Path, http_port: int,
                 programs: dict[str, dict[str, str]], groups: dict[str, list[str]]) -> str:
    sections = [
        f"[unix_http_server]\nfile={socket}\n",
        f"[inet_http_server]\nport=127.0.0.1:{http_port}\nusername={HTTP_USER}\npassword={HTTP_PASSWORD}\n",
        f"[supervisord]\nnodaemon=true\nlogfile={directory}/supervisord.log\npidfile={directory}/supervisord.pid\n"
        f"childlogdir={directory}\nloglevel=info\n",
        "[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n",
        f"[supervisorctl]\nserverurl=unix://{socket}\n",
    ]
    for name, options in programs.items():
        settings = {"autostart": "true", "autorestart": "false", "startsecs": "0", "stopwaitsecs": "5", **options}
        body = "".join(f"{key}={value}\n" for key, value in settings.items())
        sections.append(f"[program:{name}]\n{body}")
    for group, members in groups.items():
        sections.append(f"[group:{group}]\nprograms={','.join(members)}\n")
    return "\n".join(sections)


def _kill_leftovers(pids: dict[str, int]) -> None:
    for pid in pids.values():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class SupervisordLauncher:
    """Start a supervisord with the given programs; ``stop()`` kills its programs and it by PID.

    Used by the pytest fixture below and by the demo fleet.
    """

    def __init__(self, programs: dict[str, dict[str, str]], groups: dict[str, list[str]] | None = None,
                 expect_running: set[str] | None = None):
        self.programs = programs
        self.groups = groups or {}
        self.expect_running = expect_running or set()
        self.sup: Supervisord | None = None
        self._seen_pids: dict[str, int] = {}

    def start(self) -> Supervisord:
        binary = require_binary("supervisord")
        # Unix socket paths are limited to ~107 bytes: use a short temp dir, not pytest's.
        directory = Path(tempfile.mkdtemp(prefix="sv-"))
        socket = directory / "s.sock"
        config = directory / "supervisord.conf"
        http_port = free_port()
        config.write_text(_config_text(directory, socket, http_port, self.programs, self.groups))
        process = ManagedProcess([binary, "-n", "-c", str(config)], directory / "supervisord.out")
        self.sup = sup = Supervisord(directory, config, socket, http_port, process)
        try:
            wait_until(lambda: socket.exists() and sup.ctl("pid").returncode == 0, timeout=15, what="supervisord's socket")
            wait_until(lambda: self.expect_running <= sup.running(), timeout=15,
                       what=f"supervisord to start {sorted(self.expect_running)}")
            self._seen_pids = sup.pids()
        except BaseException:
            self.stop()
            raise
        return sup

    def stop(self) -> None:
        sup = self.sup
        if sup is None:
            return
        # Programs first, by PID (fast: no stopwaitsecs), then supervisord by its PID.
        if sup.process.alive():
            self._seen_pids.update(sup.pids())
        _kill_leftovers(self._seen_pids)
        sup.process.stop(grace=15)
        _kill_leftovers(self._seen_pids)
        shutil.rmtree(sup.directory, ignore_errors=True)
        self.sup = None
