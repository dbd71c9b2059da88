"""Idle cost of one agent, measured against a baseline in the same run.

Starts a Consul dev agent on loopback, then side by side for the same window:
  * the baseline: a stdlib-only Python process holding one blocking query on
    the same key (the cheapest possible watcher), and
  * one real maintenance agent (role web) as a process, settled and idle.
Reports RSS, CPU (% of one core) and Consul requests per minute for both,
and the ratios agent/baseline. With ``--after-window`` the agent first goes
through one maintenance window (its smoke test, a GET of its own ``/healthz``,
runs on the way back), so what a window leaves loaded is measured too. Usage:

    python3 -m bench.idle_agent [--seconds 60] [--after-window]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import requests

from demo.harness.agents import AgentProcess, agent_doc, wait_for_status
from demo.harness.consul import ConsulAgentProcess
from demo.harness.processes import ManagedProcess, free_port

BASELINE = textwrap.dedent("""
    import json, sys, urllib.request
    addr, key, counter = sys.argv[1], sys.argv[2], sys.argv[3]
    index, n = 0, 0
    while True:
        url = f"{addr}/v1/kv/{key}" + (f"?index={index}&wait=60s" if index else "")
        try:
            with urllib.request.urlopen(url, timeout=75) as r:
                index = max(int(r.headers.get("X-Consul-Index", 1)), 1)
        except urllib.error.HTTPError as e:
            index = max(int(e.headers.get("X-Consul-Index", 1)), 1)
        n += 1
        open(counter, "w").write(str(n))
""")


def rss_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", text).group(1)) / 1024


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def agent_requests(port: int) -> float:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return float(re.search(r"^maintenance_consul_requests_total ([\d.e+]+)$", text, re.M).group(1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--after-window", action="store_true", help="go through one window (smoke test included) before idling")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-idle-"))
    consul = ConsulAgentProcess(work / "consul").start()
    env = "bench"
    key = f"maintenance/{env}/desired"
    consul.kv_put(key, "active")
    port = free_port()
    doc = agent_doc(consul.address, env, "web-idle", ["web"], work / "state")
    doc["metrics"]["listen"] = f"127.0.0.1:{port}"
    doc["consul"]["wait_seconds"] = 60
    doc["agent"]["resync_seconds"] = 30
    doc["consul"]["session_ttl_seconds"] = 30
    if args.after_window:
        doc["web"] = {"smoke": [{"name": "own healthz", "url": f"http://127.0.0.1:{port}/healthz"}]}
    agent = AgentProcess(doc, work / "agent").start()
    counter = work / "baseline.count"
    baseline = ManagedProcess([sys.executable, "-c", BASELINE, consul.address, key, str(counter)], work / "baseline.log")
    try:
        wait_for_status(consul.address, env, "web-idle", state="active", timeout=30)
        if args.after_window:
            for mode in ("maintenance", "active"):
                wait_for_status(consul.address, env, "web-idle", state=mode, intent_index=consul.kv_put(key, mode), timeout=60)
        time.sleep(5)  # let both settle
        a_pid, b_pid = agent.process.pid, baseline.pid
        a_cpu0, b_cpu0 = cpu_seconds(a_pid), cpu_seconds(b_pid)
        a_req0, b_req0 = agent_requests(port), int(counter.read_text() or 0)
        t0 = time.monotonic()
        time.sleep(args.seconds)
        elapsed = time.monotonic() - t0
        a_cpu = (cpu_seconds(a_pid) - a_cpu0) / elapsed * 100
        b_cpu = (cpu_seconds(b_pid) - b_cpu0) / elapsed * 100
        a_req = (agent_requests(port) - a_req0) / elapsed * 60
        b_req = (int(counter.read_text() or 0) - b_req0) / elapsed * 60
        a_rss, b_rss = rss_mb(a_pid), rss_mb(b_pid)
        after = ", after one window (smoke test run)" if args.after_window else ""
        print(f"idle over {elapsed:.0f} s{after} (Consul 1.8.7 dev agent, loopback)")
        print(f"{'':24}{'agent':>10}{'baseline':>10}{'ratio':>8}")
        print(f"{'RSS MB':24}{a_rss:>10.1f}{b_rss:>10.1f}{a_rss / b_rss:>8.2f}")
        print(f"{'CPU % of one core':24}{a_cpu:>10.3f}{b_cpu:>10.3f}{(a_cpu / b_cpu if b_cpu else float('nan')):>8.2f}")
        print(f"{'Consul requests/min':24}{a_req:>10.1f}{b_req:>10.1f}{(a_req / b_req if b_req else float('nan')):>8.2f}")
        print("agent requests: 1 blocking query on the intent + 1 on its own status key (wait 60 s each); the session is bound to "
              "an HTTP check the local Consul agent runs on /healthz, so nothing renews it")
    finally:
        agent.stop()
        baseline.stop()
        consul.stop()


if __name__ == "__main__":
    main()
