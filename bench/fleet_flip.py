"""Flip-to-converged time of the demo fleet, against Consul's own notification time.

In one run, on the demo fleet (1 edge, 2 web, 2 worker, 1 scheduler; a Consul
client agent per box):
  * baseline: one raw blocking query per box, each on that box's Consul
    client agent, on a scratch key; the time from a write until the last of
    them has returned (what Consul itself needs to tell every box);
  * the agents: the time from writing the intent until the last box logged
    ``maintenance`` (or ``active``), and the time its steps took on the
    critical path (for each role, the slowest box's step time), taken from the
    agents' own JSON logs.
The agents' overhead per phase = (flip-to-converged - steps on the critical
path) / number of phases (4 roles = 4 phases, since each role waits at its gate).
  * the agents' CPU: user + system time of every agent process (``/proc``)
    from just before the write until the fleet converged, per agent and
    transition.

    python3 -m bench.fleet_flip [--rounds 5] [--pause 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import requests

from demo.fleet import DemoFleet
from demo.harness.procstats import cpu_seconds


def raw_notify_seconds(fleet: DemoFleet, key: str) -> float:
    """Time from a KV write until every box's blocking query on ``key`` has returned."""
    addresses = [box.consul.address for box in fleet.boxes.values()]
    index = int(requests.get(f"{fleet.server.address}/v1/kv/{key}", timeout=5).headers["X-Consul-Index"])
    returned: list[float] = []
    lock = threading.Lock()

    def block(address: str) -> None:
        requests.get(f"{address}/v1/kv/{key}?index={index}&wait=30s", timeout=40)
        with lock:
            returned.append(time.perf_counter())

    threads = [threading.Thread(target=block, args=(a,)) for a in addresses]
    for t in threads:
        t.start()
    time.sleep(0.3)  # every query is parked at its agent
    started = time.perf_counter()
    requests.put(f"{fleet.server.address}/v1/kv/{key}", data=str(time.time()), timeout=5)
    for t in threads:
        t.join()
    return max(returned) - started


def agents_cpu(fleet: DemoFleet) -> float:
    """CPU seconds (user + system) the fleet's agent processes have used so far."""
    return sum(cpu_seconds(box.agent.process.pid) for box in fleet.boxes.values() if box.agent and box.agent.process)


def flip_and_measure(fleet: DemoFleet, value: str, state: str) -> tuple[float, float, float]:
    """(flip-to-converged seconds, critical-path step seconds, agents' CPU seconds per agent), from the logs and /proc."""
    cpu_before = agents_cpu(fleet)
    before = datetime.now(UTC)
    index = fleet.flip(value)
    fleet.wait_for(state, index, timeout=120)
    time.sleep(0.2)  # let the last log lines land
    cpu = (agents_cpu(fleet) - cpu_before) / len(fleet.boxes)
    events = [e for e in fleet.timeline() if e["at"] >= before]
    converged = max(e["at"] for e in events if e["event"] == "state changed" and e.get("to_state") == state)
    per_role: dict[str, dict[str, float]] = {}
    for e in events:
        if e["event"] == "step done":
            per_role.setdefault(e["role"], {}).setdefault(e["node"], 0.0)
            per_role[e["role"]][e["node"]] += float(e["seconds"])
    critical = sum(max(boxes.values()) for boxes in per_role.values())
    return (converged - before).total_seconds(), critical, cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pause", type=float, default=2.0,
                        help="seconds between flips (operators flip minutes apart; the intent watch allows a burst of 10 "
                             "re-reads, then 1 a second, so back-to-back flips would measure that budget instead)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    with DemoFleet(workdir) as fleet:
        phases = len({r for box in fleet.boxes.values() for r in box.roles})
        rows = []
        for _ in range(args.rounds):
            baseline = raw_notify_seconds(fleet, "bench/scratch")
            time.sleep(args.pause)
            enter_total, enter_steps, enter_cpu = flip_and_measure(fleet, "maintenance", "maintenance")
            time.sleep(args.pause)
            exit_total, exit_steps, exit_cpu = flip_and_measure(fleet, "active", "active")
            rows.append((baseline, enter_total, enter_steps, enter_cpu, exit_total, exit_steps, exit_cpu))
        med = [statistics.median(col) for col in zip(*rows, strict=True)]
        baseline, enter_total, enter_steps, enter_cpu, exit_total, exit_steps, exit_cpu = med
        print(f"demo fleet, {len(fleet.boxes)} boxes, {phases} phases, median of {args.rounds} rounds")
        print(f"raw Consul notification of {len(fleet.boxes)} blocking queries: {baseline * 1000:7.1f} ms")
        for name, total, steps, cpu in (("enter", enter_total, enter_steps, enter_cpu), ("exit", exit_total, exit_steps, exit_cpu)):
            overhead = (total - steps) / phases
            print(f"{name}: flip→converged {total * 1000:7.1f} ms = steps {steps * 1000:6.1f} ms + agents {1000 * (total - steps):6.1f} ms;"
                  f" agents' overhead per phase {overhead * 1000:5.1f} ms = {overhead / baseline:4.1f}x the raw notification;"
                  f" CPU per agent {cpu * 1000:5.1f} ms")


if __name__ == "__main__":
    main()
