"""Drive supervisord programs and groups through its XML-RPC API.

Talks to ``[unix_http_server]`` (``unix:///path.sock``) or
``[inet_http_server]`` (``http://host:port``), with basic auth when
configured, and a timeout on every call. Names are programs (``billpay``),
groups (``workers``), ``group:process`` or globs over those; they expand to
``group:process`` names.

supervisor has no "enabled" state apart from "running": a program with
``autostart=true`` starts whenever supervisord starts. A window's hold is a
marker per ``group:process`` (``backends.holds``); on a box installed with
``install-files``, supervisor.service runs ``maintenance-agent supervisor-holds``
before supervisord, which turns ``autostart`` off for exactly the held programs.
"""

from __future__ import annotations

import base64
import fnmatch
import http.client
import socket
import xmlrpc.client
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from agent.core.holds import supervisor_markers
from agent.daemon.backends.base import BackendError, RunState, ServiceBackend, truncate
from agent.daemon.backends.holds import HoldMarkers

RUN_STATES = {
    "RUNNING": RunState.RUNNING,
    # BACKOFF: it exited too quickly and supervisord is trying again.
    "STARTING": RunState.STARTING, "BACKOFF": RunState.STARTING,
    "STOPPING": RunState.STOPPING,
    "STOPPED": RunState.STOPPED, "EXITED": RunState.STOPPED, "FATAL": RunState.STOPPED,
}

# supervisor.xmlrpc.Faults
FAULT_ALREADY_STARTED = 60
FAULT_NOT_RUNNING = 70

T = TypeVar("T")


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class _TimeoutTransport(xmlrpc.client.Transport):
    """XML-RPC over HTTP or a unix socket, with a timeout on connect and every read."""

    def __init__(self, timeout: float, socket_path: str | None, headers: list[tuple[str, str]]):
        super().__init__(headers=headers)
        self.timeout = timeout
        self.socket_path = socket_path

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        if self.socket_path is not None:
            return _UnixHTTPConnection(self.socket_path, self.timeout)
        conn = super().make_connection(host)
        conn.timeout = self.timeout
        return conn


class SupervisorBackend(ServiceBackend):
    kind = "supervisor"

    def __init__(self, url: str, holds_dir: Path, username: str | None = None, password: str | None = None, timeout: float = 60.0,
                 hook_output: Path | None = None):
        """``holds_dir``: ``<state_dir>/holds``; this backend's markers are in its ``supervisor/``. ``hook_output``: what
        supervisor.service's start hook writes; when given, a hold is refused unless it exists (the hook is installed)."""
        self.url = url
        self.hook_output = hook_output
        self.markers = HoldMarkers(supervisor_markers(holds_dir))
        self.timeout = timeout
        self._username = username
        self._password = password

    def _proxy(self) -> Any:
        headers: list[tuple[str, str]] = []
        if self._username is not None:
            token = base64.b64encode(f"{self._username}:{self._password or ''}".encode()).decode()
            headers.append(("Authorization", f"Basic {token}"))
        parts = urlsplit(self.url)
        if parts.scheme == "unix":
            transport = _TimeoutTransport(self.timeout, parts.path, headers)
            return xmlrpc.client.ServerProxy("http://localhost/RPC2", transport=transport, allow_none=True)
        transport = _TimeoutTransport(self.timeout, None, headers)
        return xmlrpc.client.ServerProxy(self.url.rstrip("/") + "/RPC2", transport=transport, allow_none=True)

    def _call(self, what: str, call: Callable[[Any], T], tolerate: int | None = None) -> T | None:
        """Make one XML-RPC call; a fault whose code is ``tolerate`` counts as success (returns None)."""
        try:
            return call(self._proxy().supervisor)
        except xmlrpc.client.Fault as fault:
            if fault.faultCode == tolerate:
                return None
            raise BackendError(f"supervisord at {self.url}: {what} failed: {fault.faultString} (fault {fault.faultCode})") from None
        except xmlrpc.client.ProtocolError as exc:
            raise BackendError(f"supervisord at {self.url}: {what} failed: HTTP {exc.errcode} {exc.errmsg}") from None
        except TimeoutError:
            raise BackendError(f"supervisord at {self.url}: {what} timed out after {self.timeout:g}s") from None
        except OSError as exc:
            raise BackendError(f"supervisord at {self.url} is not reachable ({what}): {exc.strerror or exc}") from None

    def _all_processes(self) -> list[dict[str, Any]]:
        return self._call("getAllProcessInfo", lambda s: s.getAllProcessInfo()) or []

    def expand(self, names: Sequence[str]) -> list[str]:
        processes = [f"{p['group']}:{p['name']}" for p in self._all_processes()]
        expanded: list[str] = []
        for name in names:
            found = [full for full in processes if _matches(full, name)]
            if not found:
                raise BackendError(f"supervisord at {self.url} has no program or group {name!r} (it has: {truncate(', '.join(processes), 300) or 'none'})")
            expanded.extend(f for f in found if f not in expanded)
        return expanded

    def _state(self, name: str) -> str:
        info = self._call(f"getProcessInfo({name})", lambda s: s.getProcessInfo(name)) or {}
        return str(info.get("statename", "UNKNOWN"))

    def run_state(self, name: str) -> RunState:
        state = self._state(name)
        try:
            return RUN_STATES[state]
        except KeyError:
            raise BackendError(f"supervisord at {self.url}: {name} is in state {state}, which says neither running nor stopped") from None

    def stop(self, name: str) -> None:
        self._call(f"stopProcess({name})", lambda s: s.stopProcess(name, True), tolerate=FAULT_NOT_RUNNING)

    def start(self, name: str) -> None:
        try:
            self._call(f"startProcess({name})", lambda s: s.startProcess(name, True), tolerate=FAULT_ALREADY_STARTED)
        except BackendError as exc:
            raise BackendError(f"{exc.detail}; stderr log tail: {self._stderr_tail(name)}") from None

    def _stderr_tail(self, name: str) -> str:
        try:
            tail = self._call("tailProcessStderrLog", lambda s: s.tailProcessStderrLog(name, 0, 1000))
        except BackendError as exc:
            return f"(unavailable: {exc.detail})"
        return truncate(str(tail[0]), 1000) if tail and tail[0] else "(empty)"

    def can_hold(self, name: str) -> bool:
        return True

    def is_held(self, name: str) -> bool:
        return self.markers.is_held(name)

    def hold(self, name: str) -> None:
        """A marker that ``maintenance-agent supervisor-holds`` (supervisor.service's start hook) reads: no autostart."""
        if self.hook_output is not None and not self.markers.is_held(name) and not self.hook_output.exists():
            raise BackendError(
                f"cannot hold {name}: supervisor.service's start hook has not run ({self.hook_output} is missing), so "
                "supervisord would start it again at boot mid-window: run `maintenance-agent install-files` as root, then "
                "`systemctl daemon-reload` and `systemctl restart supervisor` (or set holds_check = false for a supervisord "
                "systemd does not start)")
        self.markers.hold(name)

    def release(self, name: str) -> None:
        self.markers.release(name)

    def running_jobs(self, name: str) -> list[str]:
        return []

    def stop_running_job(self, name: str) -> None:
        self.stop(name)


def _matches(full_name: str, pattern: str) -> bool:
    """``group:process`` matches ``group``, ``process`` (when alone in its group), ``group:process`` or a glob."""
    group, _, process = full_name.partition(":")
    if ":" in pattern:
        return fnmatch.fnmatchcase(full_name, pattern)
    return fnmatch.fnmatchcase(group, pattern) or (group == process and fnmatch.fnmatchcase(process, pattern))
