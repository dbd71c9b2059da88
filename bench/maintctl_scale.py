"""How long ``maintctl status`` and ``wait`` take at fleet scale, against the same reads done raw, in the same run.

Starts a Consul dev agent, registers N simulated boxes (``demo.harness.simulated``:
catalog registration and status keys as agents write them, shape as in
``bench.fleet_scale``), settles them in maintenance, and times, each as a
fresh process (what an operator types), the median of ``--rounds``:
  * baseline: a Python process that imports ``requests`` and makes the same
    reads (the env's service health, the status prefix, the desired key);
  * ``maintctl status`` (a row per role above 30 boxes), ``status --full``,
    ``status --json`` and ``wait`` on the converged fleet.

    python3 -m bench.maintctl_scale [--sizes 100,1000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.fleet_scale import ENV, shape
from demo.harness.consul import ConsulAgentProcess
from demo.harness.processes import PROJECT
from demo.harness.simulated import SimulatedFleet

RAW = """
import sys, requests
a, env = sys.argv[1], sys.argv[2]
requests.get(f"{a}/v1/health/service/maintenance-agent?tag=env:{env}", timeout=10).json()
requests.get(f"{a}/v1/kv/maintenance/{env}/status/?recurse=1", timeout=10).json()
requests.get(f"{a}/v1/kv/maintenance/{env}/desired", timeout=10)
"""


def seconds(argv: list[str], rounds: int) -> float:
    runs = []
    for _ in range(rounds):
        started = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, cwd=PROJECT, timeout=60)
        runs.append(time.perf_counter() - started)
        if done.returncode not in (0, 1):
            raise RuntimeError(f"{argv[3:]} exited {done.returncode}: {done.stderr[-500:]}")
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100,1000")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    for n in (int(x) for x in args.sizes.split(",")):
        consul = ConsulAgentProcess(Path(tempfile.mkdtemp(prefix=f"bench-maintctl-{n}-"))).start()
        boxes = [(f"{r}-{i:04d}", (r,)) for r, c in shape(n).items() for i in range(c)]
        fleet = SimulatedFleet(consul.address, ENV, boxes)
        try:
            fleet.register()
            index = consul.kv_put(f"maintenance/{ENV}/desired", "maintenance")
            fleet.report([b for b, _ in boxes], "maintenance", index)
            maintctl = [sys.executable, "-c", "from agent.cli.maintctl import main; main()", "--consul", consul.address, "--env", ENV]
            base = seconds([sys.executable, "-c", RAW, consul.address, ENV], args.rounds)
            print(f"\n== N={n}, median of {args.rounds} fresh processes; baseline (the same reads, raw): {base:.2f} s")
            for name, extra in (("status", ["status"]), ("status --full", ["status", "--full"]), ("status --json", ["status", "--json"]),
                                ("wait", ["wait", "--timeout", "10s"])):
                took = seconds(maintctl + extra, args.rounds)
                print(f"maintctl {name:<14} {took:.2f} s  ({took / base:.1f}x the baseline)")
        finally:
            fleet.close()
            consul.stop()


if __name__ == "__main__":
    main()
