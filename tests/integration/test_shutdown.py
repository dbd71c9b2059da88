"""SIGTERM at any moment: no new action starts, the stop stays within its bound, the session is released.

The agent runs as a real process with the command backend; a service's stop
command takes 20 s (well within ``timeout_seconds``). SIGTERM while it runs
must not start the next stop, and the process must be gone within
``STOP_GRACE_SECONDS`` plus the session release — below the unit's
``TimeoutStopSec`` — leaving a valid state file and no status key behind.
"""

from __future__ import annotations

import configparser
import os
import signal
import subprocess
import time
from pathlib import Path

from agent.daemon.app import SHUTDOWN_DEADLINE_SECONDS, STOP_GRACE_SECONDS
from agent.daemon.local.statefile import read_state
from bench.figures import record
from demo.harness.agents import AgentProcess, agent_doc, status_of, wait_for_status
from demo.harness.consul import ConsulAgentProcess
from demo.harness.processes import PROJECT, wait_until


def _unit_stop_timeout() -> float:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(PROJECT / "deploy/systemd/maintenance-agent.service")
    return float(unit["Service"]["TimeoutStopSec"])


def _slow_service(folder: Path, name: str) -> dict[str, str]:
    """Marker-file service whose stop takes 20 s while ``<folder>/slow`` exists; it records when a stop begins."""
    up = folder / f"{name}.up"
    stop = (f"echo $$ > {folder}/stop-{name}.pid; touch {folder}/stop-{name}.begun; "
            f"if [ -f {folder}/slow ]; then sleep 20; fi; rm -f {up}")
    return {"stop": stop, "start": f"touch {up}", "status": f"test -f {up}"}


def _kill_abandoned(folder: Path) -> None:
    for pid_file in folder.glob("stop-*.pid"):
        try:
            os.killpg(int(pid_file.read_text()), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


def test_the_shutdown_bound_is_below_the_units_stop_timeout() -> None:
    assert STOP_GRACE_SECONDS + 5 < SHUTDOWN_DEADLINE_SECONDS < _unit_stop_timeout()


def test_sigterm_during_a_long_stop_starts_nothing_new_and_exits_in_time(own_consul: ConsulAgentProcess, environment: str,
                                                                        tmp_path: Path) -> None:
    consul = own_consul
    box = tmp_path / "box"
    box.mkdir()
    (box / "slow").touch()
    for name in ("s1", "s2"):
        (box / f"{name}.up").touch()
    worker = {"backend": "command", "services": ["s1", "s2"], "timeout_seconds": 60,
              "commands": {n: _slow_service(box, n) for n in ("s1", "s2")}}
    doc = agent_doc(consul.address, environment, "worker-t", ["worker"], tmp_path / "state", worker=worker)
    proc = AgentProcess(doc, tmp_path / "agent").start()
    try:
        wait_for_status(consul.address, environment, "worker-t", state="active", timeout=30)
        index = consul.kv_put(f"maintenance/{environment}/desired", "maintenance")
        wait_until(lambda: any(box.glob("stop-*.begun")), 30, what="the first stop to begin")
        first = next(box.glob("stop-*.begun")).name
        assert proc.process is not None
        sent = time.monotonic()
        os.kill(proc.process.pid, signal.SIGTERM)
        try:
            proc.process.proc.wait(timeout=SHUTDOWN_DEADLINE_SECONDS + 5)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running {SHUTDOWN_DEADLINE_SECONDS + 5}s after SIGTERM") from None
        took = time.monotonic() - sent
        print(f"SIGTERM during a 20 s stop: exited after {took:.1f}s (grace {STOP_GRACE_SECONDS:g}s, "
              f"deadline {SHUTDOWN_DEADLINE_SECONDS:g}s, TimeoutStopSec {_unit_stop_timeout():g}s)")
        assert took < STOP_GRACE_SECONDS + 3, proc.log()[-3000:]
        assert proc.process.proc.returncode == 0
        assert sorted(p.name for p in box.glob("stop-*.begun")) == [first], "no new stop may start once asked to stop"
        assert status_of(consul.address, environment, "worker-t") is None, "the session was released"
        doc_saved, problem = read_state(tmp_path / "state/state.json")
        assert problem is None
        snapshot = doc_saved["step:worker-services"]["snapshot"]
        assert {r["name"] for r in snapshot if r["active"]} == {"s1", "s2"}
        log = proc.log()
        assert "abandoning the action in flight" in log and "Traceback" not in log
        record("SIGTERM during a 20 s stop", faults=1, actions_lost=0, detail=f"exited after {took:.1f}s; session released; no new stop started")

        # The restart converges from there and the window ends with both services back.
        _kill_abandoned(box)
        (box / "slow").unlink()
        proc = AgentProcess(doc, tmp_path / "agent-restarted").start()
        wait_for_status(consul.address, environment, "worker-t", state="maintenance", intent_index=index, timeout=30)
        assert not any(box.glob("*.up"))
        index = consul.kv_put(f"maintenance/{environment}/desired", "active")
        wait_for_status(consul.address, environment, "worker-t", state="active", intent_index=index, timeout=30)
        assert {p.name for p in box.glob("*.up")} == {"s1.up", "s2.up"}
    finally:
        proc.stop()
        _kill_abandoned(box)


def test_sigterm_when_idle_exits_at_once_and_releases_the_session(consul_server: ConsulAgentProcess, environment: str, tmp_path: Path) -> None:
    doc = agent_doc(consul_server.address, environment, "web-idle", ["web"], tmp_path / "state")
    proc = AgentProcess(doc, tmp_path / "agent").start()
    try:
        wait_for_status(consul_server.address, environment, "web-idle", state="active", timeout=30)
        assert proc.process is not None
        sent = time.monotonic()
        os.kill(proc.process.pid, signal.SIGTERM)
        proc.process.proc.wait(timeout=SHUTDOWN_DEADLINE_SECONDS + 5)
        assert time.monotonic() - sent < 3
        assert status_of(consul_server.address, environment, "web-idle") is None
        assert read_state(tmp_path / "state/state.json")[1] is None
    finally:
        proc.stop()
