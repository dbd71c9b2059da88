"""One real agent gating on 300 simulated boxes: the gate opens, and its cost stays fixed (counted from /proc)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from demo.harness.agents import AgentProcess, agent_doc, status_of, wait_for_status
from demo.harness.consul import ConsulAgentProcess
from demo.harness.processes import wait_until
from demo.harness.procstats import PeakSampler, threads
from demo.harness.simulated import SimulatedFleet

MAX_CONNECTIONS = 8  # to the local Consul agent, whatever the fleet size
MAX_THREADS = 16  # the idle agent's threads plus the gate's two watches, whatever the fleet size


@pytest.mark.slow
def test_gate_on_300_simulated_boxes_passes_with_fixed_connections_and_threads(
        consul_server: ConsulAgentProcess, environment: str, tmp_path: Path) -> None:
    consul = consul_server
    workers = [f"worker-{i:03d}" for i in range(300)]
    fleet = SimulatedFleet(consul.address, environment, [(w, ("worker",)) for w in workers])
    fleet.register()
    fleet.report(workers, "active", 0)
    flag = tmp_path / "nightly.enabled"
    flag.touch()
    scheduler = {"backend": "command", "jobs": ["nightly"],
                 "commands": {"nightly": {"stop": f"rm -f {flag}", "start": f"touch {flag}", "status": f"test -f {flag}"}}}
    doc = agent_doc(consul.address, environment, "sched-1", ["scheduler"], tmp_path / "state", scheduler=scheduler)
    agent = AgentProcess(doc, tmp_path / "agent").start()
    try:
        wait_for_status(consul.address, environment, "sched-1", state="active", timeout=30)
        idle_threads = threads(agent.process.pid)
        with PeakSampler({"sched-1": agent.process.pid}, consul.http_port, every=0.05) as sampler:
            index = consul.kv_put(f"maintenance/{environment}/desired", "maintenance")
            blocked = wait_until(lambda: (s := status_of(consul.address, environment, "sched-1")) and s["blocked_on"] and s, 15,
                                 what="the scheduler to wait at its gate")
            assert blocked["state"] == "entering" and "worker-000 (worker: still on intent 0)" in blocked["blocked_on"]
            fleet.report(workers, "entering", index)
            for start in range(0, 299, 50):  # the workers settle in batches; the gate stays shut until the last one
                fleet.report(workers[start:start + 50][:299 - start], "maintenance", index)
                time.sleep(0.3)
                assert status_of(consul.address, environment, "sched-1")["state"] == "entering"
            time.sleep(2)  # long enough for any wrong early opening to show
            status = status_of(consul.address, environment, "sched-1")
            assert status["state"] == "entering" and status["blocked_on"] and "worker-299" in status["blocked_on"]
            fleet.report(["worker-299"], "maintenance", index)
            wait_for_status(consul.address, environment, "sched-1", state="maintenance", intent_index=index, timeout=10)
            assert not flag.exists()  # the job was disabled after the gate opened
            time.sleep(1)
        peak = sampler.peaks["sched-1"]
        assert sampler.samples["sched-1"] and peak.connections <= MAX_CONNECTIONS, peak
        assert peak.threads <= MAX_THREADS, (idle_threads, peak.threads)
        assert peak.threads <= idle_threads + 3, (idle_threads, peak.threads)  # the gate's watches, not one per box
    finally:
        agent.stop()
        fleet.deregister()
        fleet.close()
