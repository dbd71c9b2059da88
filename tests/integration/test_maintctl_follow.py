"""``maintctl wait`` shows a box's failure the moment its status reports it, keeps waiting, and prints a line per change."""

from __future__ import annotations

import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from agent.daemon.app import Agent
from demo.harness.agents import config_of
from demo.harness.consul import ConsulAgentProcess
from demo.harness.processes import wait_until
from tests.fixtures.maintctl import _file_logger
from tests.fixtures.scripts import popen_script, run_script


@contextmanager
def web_and_failing_worker(consul: ConsulAgentProcess, environment: str, root: Path) -> Iterator[Path]:
    """A web box and a worker box whose stop command fails until the file it returns exists."""
    root.mkdir(parents=True, exist_ok=True)
    running, allowed = root / "svc.running", root / "stop-allowed"
    running.touch()
    stop = root / "stop-svc"
    stop.write_text(f"#!/bin/sh\nif [ -f {allowed} ]; then rm -f {running}; else echo 'sc stop: Access is denied' >&2; exit 7; fi\n")
    stop.chmod(0o755)
    docs = [
        {"agent": {"node": f"{environment}-web-1", "roles": ["web"]}},
        {"agent": {"node": f"{environment}-worker-1", "roles": ["worker"]},
         "worker": {"backend": "command", "services": ["svc"], "timeout_seconds": 5,
                    "commands": {"svc": {"stop": str(stop), "start": f"touch {running}", "status": f"test -f {running}"}}}},
    ]
    agents: list[Agent] = []
    with open(root / "agents.log", "a", encoding="utf-8") as log_stream:
        try:
            for doc in docs:
                node = doc["agent"]["node"]
                doc["agent"].update({"environment": environment, "state_dir": str(root / node), "resync_seconds": 5, "retry_max_seconds": 1})
                doc.update({"consul": {"address": consul.address, "wait_seconds": 5, "session_ttl_seconds": 10},
                            "metrics": {"listen": "127.0.0.1:0"}})
                agents.append(Agent(config_of(doc), log=_file_logger(log_stream)).start())
            wait_until(lambda: all((consul.kv_get_json(f"maintenance/{environment}/status/{a.node}") or {}).get("state") == "active"
                                   for a in agents), 20.0, what="both agents reporting")
            yield allowed
        finally:
            for agent in agents:
                agent.stop()


def _lines(process: subprocess.Popen[str]) -> queue.Queue[tuple[float, str]]:
    """Each stdout line with the moment it arrived (proves it was flushed then, not at exit)."""
    lines: queue.Queue[tuple[float, str]] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put((time.monotonic(), line.rstrip("\n")))
    threading.Thread(target=pump, daemon=True).start()
    return lines


def _until(lines: queue.Queue[tuple[float, str]], needle: str, timeout: float, seen: list[str]) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _, line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        seen.append(line)
        if needle in line:
            return line
    raise AssertionError(f"no line with {needle!r} within {timeout}s; saw {seen}")


def test_wait_shows_a_failing_step_at_once_keeps_waiting_and_converges_when_the_retry_passes(
        consul_server: ConsulAgentProcess, environment: str, tmp_path: Path) -> None:
    base = ["--consul", consul_server.address, "--env", environment, "--tz", "UTC"]
    with web_and_failing_worker(consul_server, environment, tmp_path) as allowed:
        assert run_script("maintctl", *base, "on", "--reason", "patch", "--for", "30m").returncode == 0
        waiting = popen_script("maintctl", [*base, "wait", "--timeout", "60s"])
        try:
            lines, seen = _lines(waiting), []
            started = time.monotonic()
            failed = _until(lines, "error", 20.0, seen)
            assert time.monotonic() - started < 20.0
            assert f"{environment}-worker-1 [worker] worker-services:" in failed and "Access is denied" in failed, failed
            assert waiting.poll() is None, "wait keeps waiting after a reported error: the agent retries"
            allowed.touch()
            _until(lines, f"{environment}-worker-1 [worker] worker-services: no longer failing", 20.0, seen)
            _until(lines, "converged: every box maintenance", 20.0, seen)
            assert waiting.wait(timeout=10) == 0
            assert any(line.endswith("entering: edge done, web done, worker 0/1") or "worker 0/1" in line for line in seen), seen
            assert sum("Access is denied" in line for line in seen) == 1, "an unchanged error is said once, not on every update"
        finally:
            if waiting.poll() is None:
                waiting.kill()
            waiting.wait()


def test_wait_fail_fast_exits_1_at_the_first_reported_error(consul_server: ConsulAgentProcess, environment: str, tmp_path: Path) -> None:
    base = ["--consul", consul_server.address, "--env", environment, "--tz", "UTC"]
    with web_and_failing_worker(consul_server, environment, tmp_path):
        assert run_script("maintctl", *base, "on", "--reason", "patch", "--for", "30m").returncode == 0
        started = time.monotonic()
        result = run_script("maintctl", *base, "wait", "--timeout", "60s", "--fail-fast")
        assert result.returncode == 1, result.stderr
        assert time.monotonic() - started < 30.0
        assert "failed fast" in result.stdout and "Access is denied" in result.stdout
        assert "Traceback" not in result.stderr
