"""A hung service manager: the step times out, is reported, the loop keeps running and keeps the watchdog fed.

The agent runs as a real process with ``NOTIFY_SOCKET`` / ``WATCHDOG_USEC``
pointing at a datagram socket this test reads (standing in for systemd).
The worker's stop command hangs far longer than its timeout (like a
``systemctl stop`` stuck on a unit or a supervisord that never answers):
WATCHDOG=1 must keep arriving within the watchdog interval, the status must
say what timed out, and the box must still obey the next intent. (The other
half — a loop stuck for good stops pinging, so systemd restarts it — is the
``on_tick`` contract in tests/unit/test_watchdog_contract.py.)
"""

from __future__ import annotations

import itertools
import socket
import tempfile
import time
from pathlib import Path

import pytest

from bench.figures import record
from demo.harness.agents import AgentProcess, agent_doc, status_of, wait_for_status
from demo.harness.consul import ConsulAgentProcess
from demo.harness.processes import wait_until

WATCHDOG_SEC = 3.0


@pytest.mark.slow
def test_hung_stop_times_out_is_reported_and_the_watchdog_keeps_being_fed(consul_server: ConsulAgentProcess, environment: str,
                                                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    consul = consul_server
    folder = Path(tempfile.mkdtemp(prefix="wd-"))  # short: unix socket paths are limited to 108 bytes
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(folder / "notify"))
    notify.settimeout(0.2)
    monkeypatch.setenv("NOTIFY_SOCKET", str(folder / "notify"))
    monkeypatch.setenv("WATCHDOG_USEC", str(int(WATCHDOG_SEC * 1e6)))
    marker = tmp_path / "svc.running"
    marker.touch()
    doc = agent_doc(consul.address, environment, "wk-h", ["worker"], tmp_path / "state",
                    worker={"backend": "command", "services": ["svc"], "timeout_seconds": 1,
                            "commands": {"svc": {"stop": "sleep 300", "start": f"touch {marker}", "status": f"test -f {marker}"}}})
    doc["agent"]["retry_max_seconds"] = 10  # retry delays longer than the watchdog interval
    proc = AgentProcess(doc, tmp_path / "agent").start()
    messages: list[tuple[float, bytes]] = []

    def drain(seconds: float) -> None:
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            try:
                messages.append((time.monotonic(), notify.recv(4096)))
            except TimeoutError:
                pass

    try:
        wait_until(lambda: (drain(0.3), any(m.startswith(b"READY=1") for _, m in messages))[1], 30, what="READY=1")
        wait_for_status(consul.address, environment, "wk-h", state="active", timeout=20)
        key = f"maintenance/{environment}/desired"
        index = consul.kv_put(key, "maintenance")
        status = wait_until(lambda: (s := status_of(consul.address, environment, "wk-h")) and s["error"] and s, 20, what="the timeout reported")
        assert "timed out after 1" in status["error"] and "sleep 300" in status["error"], status["error"]
        assert status["state"] == "entering" and status["intent_index"] == index

        start = time.monotonic()
        drain(12.0)
        pings = [t for t, m in messages if t >= start and b"WATCHDOG=1" in m]
        stamps = [start, *pings, time.monotonic()]
        gap = max(b - a for a, b in itertools.pairwise(stamps))
        assert gap < WATCHDOG_SEC, f"no WATCHDOG=1 for {gap:.1f}s: systemd would restart a live agent"
        assert proc.process and proc.process.alive()
        assert proc.log().count("step failed; will retry") >= 2, "the loop keeps retrying"

        back = consul.kv_put(key, "active")  # the loop still obeys
        wait_for_status(consul.address, environment, "wk-h", state="active", intent_index=back, timeout=30)
        assert marker.exists()
        record("hung service manager (stop never returns)", faults=1, actions_lost=0,
               detail=f"longest watchdog gap {gap:.1f}s of {WATCHDOG_SEC:.0f}s")
    finally:
        proc.stop()
        notify.close()
