"""A real HAProxy running the shipped deploy/haproxy/haproxy.cfg, in front of a tiny backend.

Plain classes, usable from pytest, a demo fleet or the bench script:

    with LoopbackBackend() as backend, HAProxyUnderTest(tmp, backend.port) as hap:
        hap.map_file, hap.admin_socket, hap.url("/api/x")

The configuration is the shipped file itself: it reads its paths and
addresses from environment variables (``presetenv`` defaults for Debian), and
the fixture only sets those, so what is tested is what is deployed. When not
running as root, the three privilege lines (chroot, user, group) are removed,
each one checked to exist so the file cannot drift silently. HAProxy runs in
the foreground (``-db``) and is stopped by its PID, also when a test fails.
"""

from __future__ import annotations

import grp
import http.client
import os
import shutil
import signal
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from agent.config.roles import EdgeSection
from agent.install.files import initial_map_text
from demo.harness.processes import PROJECT, ManagedProcess, free_port, require_binary, wait_until

SHIPPED = PROJECT / "deploy" / "haproxy"
BACKEND_MARKER = "backend-ok"
PRIVILEGE_LINES = ("\tchroot /var/lib/haproxy\n", "\tuser haproxy\n", "\tgroup haproxy\n")


class _BackendHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a real application server

    def do_GET(self) -> None:
        leaked = "x-maintenance-bypass" in {name.lower() for name in self.headers}
        cookies = "|".join(self.headers.get_all("Cookie") or [])
        body = f"{BACKEND_MARKER} path={self.path} bypass_header_seen={leaked} cookie={cookies}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - silence per-request logs
        pass


class _QuietServer(ThreadingHTTPServer):
    """HAProxy's health checks and keep-alive closes reset connections; that is not a test failure."""

    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass


class LoopbackBackend:
    """A threaded HTTP server on 127.0.0.1 answering 200 ``backend-ok path=... bypass_header_seen=... cookie=...`` to everything.

    ``cookie`` is every Cookie header it received, joined with ``|`` (empty when none).
    """

    def __init__(self, port: int = 0):
        self.server = _QuietServer(("127.0.0.1", port), _BackendHandler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, name="loopback-backend", daemon=True
        )

    def start(self) -> LoopbackBackend:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> LoopbackBackend:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class HAProxyUnderTest:
    """The shipped haproxy.cfg with its files in ``workdir``, listening on a free loopback port."""

    def __init__(
        self,
        workdir: Path,
        backend_port: int,
        front_port: int | None = None,
        internal_cidrs: tuple[str, ...] = ("127.0.0.5/32",),
        bypass_secrets: tuple[str, ...] = ("staff-bypass-secret",),
        master_worker: bool = False,
    ):
        self.master_worker = master_worker
        self.workdir = Path(workdir)
        self.backend_port = backend_port
        self.front_port = front_port or free_port()
        self.maint_dir = self.workdir / "maintenance"
        self.admin_socket = self.workdir / "admin.sock"
        #: The agent's own socket (level operator, the agent's group), as the shipped haproxy.cfg has it.
        self.agent_socket = self.workdir / "agent.sock"
        self.config_path = self.workdir / "haproxy.cfg"
        self.bypass_secrets = bypass_secrets
        self.process: ManagedProcess | None = None
        self._starts = 0
        self._prepare(internal_cidrs)

    @property
    def map_file(self) -> Path:
        return self.maint_dir / "maintenance.map"

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.front_port}{path}"

    def _prepare(self, internal_cidrs: tuple[str, ...]) -> None:
        shutil.copytree(SHIPPED / "maintenance", self.maint_dir, dirs_exist_ok=True)
        self.map_file.write_text(initial_map_text())  # what install-files writes on an edge box
        (self.maint_dir / "internal.cidr").write_text("\n".join(internal_cidrs) + "\n")
        (self.maint_dir / "bypass.secrets").write_text("\n".join(self.bypass_secrets) + "\n")
        text = (SHIPPED / "haproxy.cfg").read_text()
        if os.geteuid() != 0:
            for line in PRIVILEGE_LINES:
                if line not in text:
                    raise AssertionError(f"shipped haproxy.cfg lost the line {line.strip()!r}; update the fixture")
                text = text.replace(line, "")
        self.config_path.write_text(text)

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "MAINT_DIR": str(self.maint_dir),
            "MAINT_MAP": str(self.map_file),
            "ADMIN_SOCK": str(self.admin_socket),
            "AGENT_SOCK": str(self.agent_socket),
            "AGENT_GROUP": grp.getgrgid(os.getgid()).gr_name,
            "FRONT_BIND": f"127.0.0.1:{self.front_port}",
            "BACKEND_APP": f"127.0.0.1:{self.backend_port}",
        }

    def start(self, timeout: float = 10.0) -> HAProxyUnderTest:
        binary = require_binary("haproxy")
        self._starts += 1
        log = self.workdir / f"haproxy.{self._starts}.log"
        mode = ["-W"] if self.master_worker else []  # -W: Debian's systemd unit runs -Ws, a master and a worker
        argv = [binary, *mode, "-db", "-f", str(self.config_path)]
        self.process = ManagedProcess(argv, log, env=self.env(), cwd=self.workdir)
        try:
            wait_until(self._ready, timeout, what=f"HAProxy on 127.0.0.1:{self.front_port}")
        except TimeoutError as exc:
            output = self.process.output()
            self.stop()
            raise RuntimeError(f"{exc}; HAProxy output:\n{output}") from None
        return self

    def _ready(self) -> bool:
        if self.process is None or not self.process.alive():
            raise RuntimeError("HAProxy exited")
        if self.master_worker and self._loaded() < 1:
            return False  # as systemd's Type=notify waits for it: a reload signalled before is dropped by the master
        with socket.socket(socket.AF_UNIX) as admin:
            admin.connect(str(self.admin_socket))
        with socket.create_connection(("127.0.0.1", self.front_port), timeout=1):
            return True

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def restart(self) -> HAProxyUnderTest:
        """Stop and start again: the running state is lost, only the files on disk count."""
        self.stop()
        return self.start()

    def reload(self, timeout: float = 10.0) -> HAProxyUnderTest:
        """``systemctl reload``: the master re-reads the config and files, a new worker takes over."""
        if not self.master_worker or self.process is None:
            raise RuntimeError("reload needs HAProxyUnderTest(master_worker=True), started")
        before, loaded = self.worker_pid(), self._loaded()
        deadline = time.monotonic() + timeout
        while True:
            os.kill(self.process.pid, signal.SIGUSR2)
            try:
                # A master just started may drop a SIGUSR2 (seen about 1 in 6 right after "Loading success"): send again.
                wait_until(lambda: self.worker_pid() not in (None, before) and self._loaded() > loaded,
                           max(0.1, min(2.0, deadline - time.monotonic())), what="a new HAProxy worker after reload, and the master ready again")
                return self
            except TimeoutError:
                if time.monotonic() >= deadline:
                    raise

    def _loaded(self) -> int:
        """How often the master said its workers were up ("Loading success": when -Ws tells systemd READY=1)."""
        return self.process.output().count("Loading success") if self.process else 0

    def worker_pid(self) -> int | None:
        """The PID of the process answering the admin socket (the worker in master-worker mode)."""
        try:
            with socket.socket(socket.AF_UNIX) as admin:
                admin.settimeout(2)
                admin.connect(str(self.admin_socket))
                admin.sendall(b"show info\n")
                answer = b""
                while chunk := admin.recv(65536):
                    answer += chunk
        except OSError:
            return None
        for line in answer.decode().splitlines():
            if line.startswith("Pid: "):
                return int(line.split()[1])
        return None

    def output(self) -> str:
        return self.process.output() if self.process else ""

    def __enter__(self) -> HAProxyUnderTest:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: str


def http_get(url: str, source: str | None = None, headers: dict[str, str] | None = None, timeout: float = 5.0) -> Answer:
    """One GET on a fresh connection, optionally from a chosen loopback source address."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(
        parts.hostname, parts.port, timeout=timeout, source_address=(source, 0) if source else None
    )
    try:
        conn.request("GET", parts.path or "/", headers=headers or {})
        response = conn.getresponse()
        body = response.read().decode(errors="replace")
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, body)
    finally:
        conn.close()


PAGE_MARKER = 'data-maintenance="on"'
JSON_MARKER = '"status":"maintenance"'


def edge_section(hap: HAProxyUnderTest, base_url: str | None = None, **overrides: object) -> EdgeSection:
    """An [edge] config for ``hap``; ``base_url`` points verification elsewhere (e.g. at the bare backend)."""
    base = base_url or hap.url("")
    doc: dict[str, object] = {
        "admin_socket": str(hap.agent_socket),
        "map_file": str(hap.map_file),
        "socket_timeout_seconds": 2.0,
        "verify_attempts": 2,
        "verify_interval_seconds": 0.1,
        "verify_maintenance": [
            {"name": "ui", "url": f"{base}/", "expect_status": 503, "expect_body": PAGE_MARKER, "timeout_seconds": 2},
            {"name": "api", "url": f"{base}/api/ping", "expect_status": 503, "expect_body": JSON_MARKER, "timeout_seconds": 2},
        ],
        "verify_active": [
            {"name": "ui", "url": f"{base}/", "expect_status": 200, "expect_body": BACKEND_MARKER, "timeout_seconds": 2},
            {"name": "api", "url": f"{base}/api/ping", "expect_status": 200, "expect_body": BACKEND_MARKER, "timeout_seconds": 2},
        ],
    }
    doc.update(overrides)
    return EdgeSection.model_validate(doc)
