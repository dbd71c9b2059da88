"""Fleet scale: N boxes in one environment, a sample of them real agent processes, the rest simulated.

For each N (default 100, 500, 1000; shape per 1000: 2 edge, 40 web, 950
worker, 8 scheduler) on a fresh Consul dev agent (loopback):
  * registers every box as its agent would (``demo.harness.simulated``) and
    starts real agent processes for every edge (each with its own HAProxy) and
    scheduler box and a sample of web and worker boxes (``--real`` in all);
    the simulated boxes follow the gates and report like agents, each role's
    steps taking ``--step`` seconds (the real ones' command steps too);
  * flips into maintenance and back, and prints:
      - flip -> every real agent notified, against a raw blocking-query
        fan-out to N watchers and to as many watchers as real agents (the floor);
      - per gate, from the last box of the earlier roles settling to each real
        box of the next role passing its gate, p50 and p99;
      - flip -> fleet converged, entering and leaving;
      - per real agent, counted by the OS (/proc): connections to Consul,
        threads, RSS (max over the transitions); Consul requests during the
        transitions and per idle minute (its own counter, over ``--idle``);
      - the Consul agent's CPU seconds and bytes written (``/proc/<pid>/io``
        wchar: its sockets and its log) during the window;
      - refusals: 429 answers or "too many connections" in any log.

    python3 -m bench.fleet_scale [--sizes 100,500,1000] [--real 50] [--step 0.2] [--idle 60]
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import requests

from demo.harness.agents import AgentProcess, agent_doc, wait_for_status
from demo.harness.consul import ConsulAgentProcess
from demo.harness.haproxy import HAProxyUnderTest, LoopbackBackend, edge_section
from demo.harness.procstats import PeakSampler, cpu_seconds
from demo.harness.simulated import FleetDriver, SimulatedFleet

ORDER = ["edge", "web", "worker", "scheduler"]
ENV = "scale"


def shape(n: int) -> dict[str, int]:
    edge, scheduler, web = 2, max(1, n * 8 // 1000), max(2, n * 40 // 1000)
    return {"edge": edge, "web": web, "worker": n - edge - scheduler - web, "scheduler": scheduler}


def pick_real(names: dict[str, list[str]], real: int) -> list[str]:
    """Every edge and scheduler box, then web and worker boxes (about one web for four workers) up to ``real``."""
    chosen = names["edge"] + names["scheduler"]
    left = max(0, real - len(chosen))
    webs = min(len(names["web"]), max(1, left // 5))
    return chosen + names["web"][:webs] + names["worker"][:left - webs]


def metrics_port(offset: int) -> int:
    """A port below the ephemeral range for an agent's metrics: ports picked by ``free_port`` (Consul's, HAProxy's,
    other tests') come from the ephemeral range and cannot take it between our pick and the agent's bind."""
    port = 21000 + offset
    while True:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
                return port
            except OSError:
                port += 1000


def raw_fanout_seconds(consul: ConsulAgentProcess, watchers: int) -> float:
    """From a KV write until ``watchers`` parked blocking queries on that key all returned."""
    key = f"{consul.address}/v1/kv/bench/fanout"
    requests.put(key, data="0", timeout=5)
    index = int(requests.get(key, timeout=5).headers["X-Consul-Index"])
    parked, returned, lock = threading.Barrier(watchers + 1), [], threading.Lock()

    def block() -> None:
        with requests.Session() as http:
            parked.wait()
            http.get(f"{key}?index={index}&wait=30s", timeout=40)
            with lock:
                returned.append(time.perf_counter())

    pool = [threading.Thread(target=block) for _ in range(watchers)]
    for t in pool:
        t.start()
    parked.wait()
    time.sleep(1.0 + watchers / 500)  # every query parked at Consul
    started = time.perf_counter()
    requests.put(key, data="1", timeout=5)
    for t in pool:
        t.join()
    return max(returned) - started


class RealBoxes:
    """The real agent processes, each configured for its role; edges get their own HAProxy."""

    def __init__(self, consul: ConsulAgentProcess, boxes: dict[str, str], work: Path, step: float):
        self.consul, self.boxes, self.work, self.step = consul, boxes, work, step
        self.backend = LoopbackBackend().start()
        self.haproxies: list[HAProxyUnderTest] = []
        self.agents: dict[str, AgentProcess] = {}
        self.ports: dict[str, int] = {}

    def start(self) -> RealBoxes:
        docs = {box: self._doc(box, role) for box, role in self.boxes.items()}
        for box, doc in docs.items():
            self.agents[box] = AgentProcess(doc, self.work / "agents")
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda a: a.start(), self.agents.values()))
            list(pool.map(lambda b: wait_for_status(self.consul.address, ENV, b, state="active", timeout=180), self.agents))
        return self

    def _doc(self, box: str, role: str) -> dict:
        port = self.ports[box] = metrics_port(len(self.ports))
        doc = agent_doc(self.consul.address, ENV, box, [role], self.work / "state" / box)
        doc["metrics"]["listen"] = f"127.0.0.1:{port}"
        doc["consul"].update({"wait_seconds": 60, "session_ttl_seconds": 15})
        doc["agent"].update({"resync_seconds": 30})
        flag = self.work / "flags" / box
        flag.parent.mkdir(parents=True, exist_ok=True)
        flag.touch()
        commands = {"run": {"stop": f"sleep {self.step}; rm -f {flag}", "start": f"sleep {self.step}; touch {flag}", "status": f"test -f {flag}"}}
        if role == "worker":
            doc["worker"] = {"backend": "command", "services": ["run"], "commands": commands}
        elif role == "scheduler":
            doc["scheduler"] = {"backend": "command", "jobs": ["run"], "commands": commands}
        elif role == "edge":
            hap = HAProxyUnderTest(self.work / f"haproxy-{box}", backend_port=self.backend.port).start()
            self.haproxies.append(hap)
            doc["edge"] = _without_none(edge_section(hap).model_dump(mode="json"))
        return doc

    def stop(self) -> None:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda a: a.stop(), self.agents.values()))
        for hap in self.haproxies:
            hap.stop()
        self.backend.stop()

    def requests_made(self) -> dict[str, float]:
        out = {}
        for box, port in self.ports.items():
            text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            out[box] = float(re.search(r"^maintenance_consul_requests_total ([\d.e+]+)$", text, re.M).group(1))
        return out

    def cpu(self) -> dict[str, float]:
        return {box: cpu_seconds(agent.process.pid) for box, agent in self.agents.items() if agent.process}

    def events(self, since: float) -> list[dict]:
        out = []
        for box, agent in self.agents.items():
            for line in agent.log().splitlines():
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                at = datetime.fromisoformat(event.get("timestamp", "1970-01-01T00:00:00+00:00").replace("Z", "+00:00")).timestamp()
                if at >= since:
                    out.append({**event, "at": at, "box": box})
        return out


def _without_none(value: object) -> object:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def gate_latencies(events: list[dict], real: dict[str, str], driver: FleetDriver, sequence: list[str], index: int) -> dict[str, list[float]]:
    """For each gate (role after the first): each real box's pass time minus the last settle time of the earlier roles."""
    settled: dict[str, list[float]] = {r: list(driver.settled_at.get(r, {}).values()) for r in sequence}
    acted: dict[str, float] = {}
    for e in events:
        if e.get("intent_index") != index:
            continue
        if e["event"] == "role settled":
            settled[e["role"]].append(e["at"])
        if e["event"] in ("gate open", "step acting", "role settled") and e["box"] not in acted:
            acted[e["box"]] = e["at"]
    out = {}
    for position, role in enumerate(sequence[1:], start=1):
        last = max((t for r in sequence[:position] for t in settled[r]), default=None)
        mine = [acted[b] - last for b, r in real.items() if r == role and b in acted and last is not None]
        out[f"{sequence[position - 1]}->{role}"] = mine
    return out


def transition(consul: ConsulAgentProcess, real: RealBoxes, driver: FleetDriver, mode: str) -> dict:
    before = real.requests_made()
    cpu_before = real.cpu()
    started = time.time()
    index = consul.kv_put(f"maintenance/{ENV}/desired", mode)
    converged = driver.run(index, mode)
    time.sleep(1.0)  # the last log lines
    events = real.events(started)
    notified = [e["at"] - started for e in events if e["event"] == "intent accepted" and e.get("intent_index") == index]
    after = real.requests_made()
    sequence = ORDER if mode == "maintenance" else list(reversed(ORDER))
    return {"converged": converged - started, "notified": max(notified) if notified else float("nan"),
            "gates": gate_latencies(events, real.boxes, driver, sequence, index),
            "requests": [after[b] - before[b] for b in after], "cpu": [c - cpu_before[b] for b, c in real.cpu().items()]}


def consul_io(consul: ConsulAgentProcess) -> tuple[float, int]:
    pid = consul.process.pid
    wchar = int(re.search(r"^wchar: (\d+)$", Path(f"/proc/{pid}/io").read_text(), re.M).group(1))
    return cpu_seconds(pid), wchar


def run_size(n: int, args: argparse.Namespace, work: Path) -> None:
    counts = shape(n)
    names = {r: [f"{r}-{i:04d}" for i in range(c)] for r, c in counts.items()}
    members = {b: (r,) for r, boxes in names.items() for b in boxes}
    real_names = pick_real(names, args.real)
    consul = ConsulAgentProcess(work / "consul").start()
    fleet = SimulatedFleet(consul.address, ENV, [(b, roles) for b, roles in members.items() if b not in real_names])
    real = RealBoxes(consul, {b: members[b][0] for b in real_names}, work, args.step)
    try:
        fleet.register()
        fleet.report(list(fleet.boxes), "active", 0)
        real.start()
        floor_n, floor_real = raw_fanout_seconds(consul, n), raw_fanout_seconds(consul, len(real_names))
        driver = FleetDriver(fleet, members, ORDER, args.step)
        cpu0, bytes0 = consul_io(consul)
        with PeakSampler({box: agent.process.pid for box, agent in real.agents.items()}, consul.http_port) as sampler:
            enter = transition(consul, real, driver, "maintenance")
            leave = transition(consul, real, driver, "active")
        cpu1, bytes1 = consul_io(consul)
        time.sleep(5)
        idle0 = real.requests_made()
        time.sleep(args.idle)
        idle = {b: (v - idle0[b]) * 60 / args.idle for b, v in real.requests_made().items()}
        logs = [a.log() for a in real.agents.values()] + [consul.process.output()]
        refusals = sum(len(re.findall(r"\b429\b|too many (concurrent|open) connections", text, re.I)) for text in logs)
        print(f"\n== N={n} ({', '.join(f'{c} {r}' for r, c in counts.items())}); {len(real_names)} real agents, step {args.step}s")
        print(f"flip -> every real agent notified: enter {enter['notified'] * 1000:.0f} ms, leave {leave['notified'] * 1000:.0f} ms;"
              f" floor: raw fan-out to {n} watchers {floor_n * 1000:.0f} ms, to {len(real_names)} {floor_real * 1000:.0f} ms")
        for name, result in (("enter", enter), ("leave", leave)):
            gates = "; ".join(f"{g} p50 {percentile(v, .5) * 1000:.0f} ms p99 {percentile(v, .99) * 1000:.0f} ms (n={len(v)})"
                              for g, v in result["gates"].items())
            print(f"{name}: flip -> converged {result['converged']:.2f} s; gates: {gates}")
        peaks = list(sampler.peaks.values())
        transition_requests = [a + b for a, b in zip(enter["requests"], leave["requests"], strict=True)]
        print(f"per real agent (max): connections to Consul {max(p.connections for p in peaks)}, threads {max(p.threads for p in peaks)},"
              f" RSS {max(p.rss for p in peaks) / 2**20:.0f} MB; Consul requests in both transitions median {statistics.median(transition_requests):.0f}"
              f" max {max(transition_requests):.0f}; CPU seconds in both transitions median"
              f" {statistics.median(a + b for a, b in zip(enter['cpu'], leave['cpu'], strict=True)):.2f}"
              f" max {max(a + b for a, b in zip(enter['cpu'], leave['cpu'], strict=True)):.2f}")
        for role in ORDER:
            mine = [v for b, v in idle.items() if real.boxes[b] == role]
            if mine:
                print(f"  {role}: Consul requests per idle minute median {statistics.median(mine):.1f} max {max(mine):.1f} (n={len(mine)})")
        print(f"Consul agent during the window (enter + leave): CPU {cpu1 - cpu0:.2f} s, bytes written {(bytes1 - bytes0) / 2**20:.1f} MB;"
              f" refusals (429 / too many connections) in any log: {refusals}")
    finally:
        real.stop()
        try:
            fleet.deregister()
        finally:
            fleet.close()
            consul.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100,500,1000")
    parser.add_argument("--real", type=int, default=50, help="real agent processes (every edge and scheduler box, then web and worker)")
    parser.add_argument("--step", type=float, default=0.2, help="seconds each role's step takes, real and simulated")
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of idle measured after the transitions")
    args = parser.parse_args()
    for n in (int(x) for x in args.sizes.split(",")):
        run_size(n, args, Path(tempfile.mkdtemp(prefix=f"bench-scale-{n}-")))


if __name__ == "__main__":
    main()
