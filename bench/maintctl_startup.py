"""How fast maintctl answers, against Consul's own command on the same machine in the same run.

Starts a Consul dev agent on loopback with six registered boxes (the demo
fleet's shape: 1 edge, 2 web, 2 worker, 1 scheduler) and their status keys,
then times, as the median wall time of ``--runs`` runs of each process
(each maintctl run followed by its consul counterpart, so load from
elsewhere on the machine falls on both alike):

  * ``maintctl --help``             against ``consul --help``
  * ``maintctl status`` (six boxes) against ``consul kv get <desired key>``
  * ``maintctl on --dry-run``       against ``consul kv get <desired key>``

maintctl runs as its console script does (``from agent.cli.maintctl import
main; main()``) with the real interpreter, not through a version manager's
shim, and from compiled modules, as installed from a wheel: bytecode is
written to a scratch ``PYTHONPYCACHEPREFIX`` by a first run (a shell with
``PYTHONDONTWRITEBYTECODE`` set would otherwise time the compiler on every
run). The wall-time ratio maintctl / consul must stay within ``--limit`` (5)
for each; the CPU-time ratio is printed beside it (less sensitive to load
from other processes on the machine).

It also checks the daemon did not grow: the import time and RSS of the
daemon's modules (``agent.cli.agent_main``, ``agent.daemon.app``) in this
tree against the tree at ``--baseline-ref`` (default: where this branch left
``main``), extracted with ``git archive`` and measured alternately in the same run.

    python3 -m bench.maintctl_startup [--runs 21] [--limit 5]

Exit 1 when a ratio is over the limit.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from agent.clients.consul import ConsulGateway, ttl_check
from agent.core.model import State, Status
from demo.harness.consul import ConsulAgentProcess
from demo.harness.processes import PROJECT, consul_binary

ENVIRONMENT = "bench"
BOXES = {"edge-1": ("edge",), "web-1": ("web",), "web-2": ("web",), "worker-1": ("worker",), "worker-2": ("worker",),
         "scheduler-1": ("scheduler",)}
MAINCTL = "import sys; from agent.cli.maintctl import main; sys.argv[0] = 'maintctl'; main()"
DAEMON_IMPORT = ("import time, re; t = time.perf_counter(); import agent.cli.agent_main, agent.daemon.app, agent.daemon.local.logs; "
                 "t = time.perf_counter() - t; "
                 "rss = int(re.search(r'VmRSS:\\s+(\\d+)', open('/proc/self/status').read()).group(1)); print(t, rss)")


def timed_ms(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall time and CPU time (user + system, the child's) of one run, in ms."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=PROJECT, check=False)
    wall = (time.perf_counter() - started) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(argv[-3:])} failed ({done.returncode}): {done.stderr.decode()[-500:]}")
    return wall, (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000


def paired_medians(ours: list[str], theirs: list[str], runs: int, env: dict[str, str]) -> tuple[tuple[float, float], tuple[float, float]]:
    """Median (wall, CPU) of both commands, run alternately so a load spike from elsewhere hits both alike."""
    mine, baseline = [], []
    for _ in range(runs):
        mine.append(timed_ms(ours, env))
        baseline.append(timed_ms(theirs, env))
    return ((statistics.median(w for w, _ in mine), statistics.median(c for _, c in mine)),
            (statistics.median(w for w, _ in baseline), statistics.median(c for _, c in baseline)))


def seed_fleet(consul: ConsulAgentProcess) -> str:
    """Six registered boxes reporting ``active``; returns the desired key."""
    gateway = ConsulGateway(consul.address)
    key = f"maintenance/{ENVIRONMENT}/desired"
    index = consul.kv_put(key, "active")
    now = datetime.now(UTC)
    for box, roles in BOXES.items():
        service_id = f"maintenance-agent:{ENVIRONMENT}:{box}"
        gateway.register_agent_service(service_id, [f"env:{ENVIRONMENT}", *(f"role:{r}" for r in roles)], {"box": box},
                                       check=ttl_check(f"{service_id}:ttl", 600))
        status = Status(node=box, roles=roles, state=State.ACTIVE, intent_index=index, since=now, progress={r: "active" for r in roles})
        consul.kv_put(f"maintenance/{ENVIRONMENT}/status/{box}", status.to_json())
    return key


def compiled(work: Path) -> dict[str, str]:
    """This environment, with bytecode written to (and read from) a scratch prefix."""
    env = {**os.environ, "PYTHONPYCACHEPREFIX": str(work / "pycache")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def daemon_footprints(roots: tuple[Path, Path], runs: int, env: dict[str, str]) -> list[tuple[float, float]]:
    """Median import time (ms) and RSS (MB) of the daemon's modules in each tree, the trees measured alternately."""
    samples: list[list[tuple[float, float]]] = [[], []]
    for root in roots:  # a first import writes the bytecode
        subprocess.run([sys.executable, "-c", DAEMON_IMPORT], capture_output=True, check=True, cwd=root, env={**env, "PYTHONPATH": str(root)})
    for _ in range(runs):
        for i, root in enumerate(roots):
            out = subprocess.run([sys.executable, "-c", DAEMON_IMPORT], capture_output=True, text=True, check=True,
                                 cwd=root, env={**env, "PYTHONPATH": str(root)})
            seconds, kb = out.stdout.split()
            samples[i].append((float(seconds) * 1000, int(kb) / 1024))
    return [(statistics.median(t for t, _ in s), statistics.median(r for _, r in s)) for s in samples]


def baseline_tree(ref: str | None, into: Path) -> tuple[str, Path]:
    if ref is None:
        ref = subprocess.run(["git", "merge-base", "HEAD", "main"], capture_output=True, text=True, check=True, cwd=PROJECT).stdout.strip()
    archive = into / "baseline.tar"
    subprocess.run(["git", "archive", "-o", str(archive), ref, "agent"], check=True, cwd=PROJECT)
    with tarfile.open(archive) as tar:
        tar.extractall(into / "tree", filter="data")
    return ref, into / "tree"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--limit", type=float, default=5.0)
    parser.add_argument("--baseline-ref", default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-maintctl-"))
    consul = ConsulAgentProcess(work / "consul").start()
    try:
        key = seed_fleet(consul)
        env = {**compiled(work), "CONSUL_HTTP_ADDR": consul.address, "MAINTCTL_ENV": ENVIRONMENT, "PYTHONPATH": str(PROJECT)}
        env.pop("CONSUL_HTTP_TOKEN", None)
        maintctl = [sys.executable, "-c", MAINCTL]
        pairs = [
            ("--help", [*maintctl, "--help"], [consul_binary(), "--help"]),
            ("status (6 boxes)", [*maintctl, "status"], [consul_binary(), "kv", "get", key]),
            ("on --dry-run", [*maintctl, "on", "--reason", "bench", "--for", "30m", "--dry-run"], [consul_binary(), "kv", "get", key]),
        ]
        for _, ours, _theirs in pairs:  # the first runs write the bytecode
            timed_ms(ours, env)
        bare = statistics.median(timed_ms([sys.executable, "-c", "pass"], env)[0] for _ in range(args.runs))
        print(f"runs per figure: {args.runs} (medians); bare `python3 -c pass`: {bare:.1f} ms wall; load average {os.getloadavg()[0]:.2f}")
        print(f"{'maintctl':<18} {'wall ms':>8} {'cpu ms':>7}   {'consul':<14} {'wall ms':>8} {'cpu ms':>7}   wall ratio  cpu ratio")
        over = []
        for name, ours, theirs in pairs:
            (mine, mine_cpu), (baseline, baseline_cpu) = paired_medians(ours, theirs, args.runs, env)
            ratio = mine / baseline
            label = " ".join(theirs[1:]).replace(key, "<key>")
            print(f"{name:<18} {mine:8.1f} {mine_cpu:7.1f}   {label:<14} {baseline:8.1f} {baseline_cpu:7.1f}   {ratio:9.2f}x "
                  f"{mine_cpu / baseline_cpu:9.2f}x" + ("  OVER" if ratio > args.limit else ""))
            if ratio > args.limit:
                over.append(name)
        ref, tree = baseline_tree(args.baseline_ref, work)
        (now_ms, now_mb), (then_ms, then_mb) = daemon_footprints((PROJECT, tree), args.runs, compiled(work))
        print(f"daemon modules import: {now_ms:.1f} ms, RSS {now_mb:.1f} MB; at {ref[:10]}: {then_ms:.1f} ms, RSS {then_mb:.1f} MB "
              f"({now_ms / then_ms:.2f}x time, {now_mb / then_mb:.2f}x RSS)")
        if over:
            print(f"over {args.limit:g}x: {', '.join(over)}")
        return 1 if over else 0
    finally:
        consul.stop()


if __name__ == "__main__":
    sys.exit(main())
