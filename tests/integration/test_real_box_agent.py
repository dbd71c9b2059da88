"""The agent's own unit in a real box: the watchdog, stopping, and its lines in journald with their fields."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from demo.harness.agent_box import AgentBox, put_intent
from demo.harness.processes import wait_until
from tests.fixtures.real_box import RAN_BEFORE, WORKERS, box_layer, box_wheels, worker_box  # noqa: F401

UNIT = "maintenance-agent"


@pytest.mark.slow
def test_a_frozen_agent_is_restarted_by_the_watchdog_and_keeps_the_box_as_it_was(worker_box: AgentBox) -> None:
    # The shipped WatchdogSec is 90 s; a drop-in shortens it so the test waits seconds (an operator may do the same).
    worker_box.box.write(f"/etc/systemd/system/{UNIT}.service.d/zz-test-watchdog.conf", "[Service]\nWatchdogSec=6\nTimeoutAbortSec=3\n")
    worker_box.box.systemctl("daemon-reload")
    worker_box.box.systemctl("restart", UNIT)
    on = put_intent(worker_box.consul_address, worker_box.environment, "maintenance")
    worker_box.wait_status(state="maintenance", intent_index=on)
    frozen = worker_box.box.main_pid(UNIT)
    starts = len(worker_box.starts())
    os.kill(frozen, signal.SIGSTOP)
    wait_until(lambda: worker_box.box.unit_property(UNIT, "NRestarts") not in ("", "0"), 60, interval=0.5, what="the watchdog's restart")
    assert "watchdog" in worker_box.box.journal("-u", UNIT, "-o", "cat").lower()
    worker_box.wait_active()
    assert worker_box.box.main_pid(UNIT) not in (0, frozen)
    worker_box.wait_status(state="maintenance", intent_index=on)
    assert worker_box.active(*WORKERS) == dict.fromkeys(WORKERS, "inactive")
    assert [u for u in worker_box.starts()[starts:] if u in WORKERS] == [], "the restarted agent started nothing"

    off = put_intent(worker_box.consul_address, worker_box.environment, "active")
    worker_box.wait_status(state="active", intent_index=off)
    assert {u for u, state in worker_box.active(*WORKERS).items() if state == "active"} == RAN_BEFORE


@pytest.mark.slow
def test_systemctl_stop_ends_the_agent_within_its_timeout_and_releases_its_status(worker_box: AgentBox) -> None:
    timeout = float(worker_box.box.unit_property(UNIT, "TimeoutStopUSec").removesuffix("s") or 0)
    assert timeout == 30
    began = time.monotonic()
    worker_box.box.systemctl("stop", UNIT)
    took = time.monotonic() - began
    assert took < timeout, f"systemctl stop took {took:.1f}s"
    assert worker_box.box.unit_property(UNIT, "Result") == "success"
    wait_until(lambda: worker_box.status() is None, 10, what="the status key released with the session")


@pytest.mark.slow
def test_the_agents_lines_reach_journald_with_their_fields(worker_box: AgentBox) -> None:
    on = put_intent(worker_box.consul_address, worker_box.environment, "maintenance")
    worker_box.wait_status(state="maintenance", intent_index=on)
    entries = [json.loads(line) for line in worker_box.box.journal("-u", UNIT, "-o", "json").splitlines() if line.strip()]
    done = [e for e in entries if e.get("EVENT") == "step done" and e.get("STEP") == "worker-services"]
    assert done, f"no 'step done' entry with fields among {len(entries)}"
    entry = done[-1]
    assert entry["NODE"] == worker_box.node and entry["SYSLOG_IDENTIFIER"] == "maintenance-agent" and entry["PRIORITY"] == "6"
    assert entry["MESSAGE"].startswith("step done ")
    assert entry["_SYSTEMD_UNIT"] == "maintenance-agent.service" and entry["_UID"] != "0", "logged by the unit, as its own user"
    matched = worker_box.box.journal("-u", UNIT, "-o", "cat", f"NODE={worker_box.node}", "STEP=worker-services")
    assert "step done" in matched
