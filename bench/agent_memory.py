"""Where an agent's memory goes: the RSS each library adds, in the order the daemon loads them, in one fresh process.

The idle agent's RSS (``bench/idle_agent.py``) is one number; this says what
it is made of, so a target (40 MB) can be weighed against what would have to
go. A fresh interpreter (the baseline, measured in the same run) imports, one
group at a time, what ``maintenance-agent run`` loads, and after each group
collects garbage and trims the heap as the agent does after start-up
(``_release_start_up_memory``), then reads its RSS from ``/proc``. The last
group, ``requests``, is what the smoke test and the other HTTP checks still
load when they first run. Usage:

    python3 -m bench.agent_memory [--runs 5]

Each figure is the median of ``--runs`` fresh processes; groups are cumulative,
so a library shared by two groups counts for the first.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from demo.harness.processes import PROJECT

GROUPS = [
    ("the config (pydantic in a forked child; plain objects)",
     "import agent.config.plain as p; p.load_in_child(CONFIG)"),
    ("structlog (its stdlib module imports asyncio)", "import structlog"),
    ("prometheus_client", "import prometheus_client, prometheus_client.exposition"),
    ("APScheduler 3 (its pool executor imports multiprocessing)", "import apscheduler.schedulers.background"),
    ("transitions", "import transitions"),
    ("the Consul transport (http.client, ssl, email)", "import agent.clients.consul"),
    ("py-consul's API (consul.base, no requests)", "import agent.clients.consul_api"),
    ("the rest of the daemon (steps, backends, xmlrpc, ...)", "import agent.cli.agent_main, agent.daemon.app, agent.daemon.local.logs"),
    ("requests + urllib3 (loaded when an HTTP check first runs)", "import requests"),
]

CONFIG = '[agent]\nnode = "n"\nroles = ["web"]\nenvironment = "bench"\nstate_dir = "/tmp"\n'

PROBE = """
import ctypes, gc, json, re, sys
sys.modules.setdefault("rich", None)  # as the agent does (_lighter_imports)
for name in ("chardet", "charset_normalizer"):
    sys.modules.setdefault(name, None)
CONFIG = sys.argv[2]
def rss():
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    return int(re.search(r"VmRSS:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) / 1024
marks = [rss()]
for code in json.loads(sys.argv[1]):
    exec(code)
    marks.append(rss())
print(json.dumps(marks))
"""


def one_run() -> list[float]:
    with tempfile.NamedTemporaryFile("w", suffix=".toml") as config:
        config.write(CONFIG)
        config.flush()
        done = subprocess.run([sys.executable, "-c", PROBE, json.dumps([code for _, code in GROUPS]), config.name], capture_output=True,
                              text=True, check=True, cwd=PROJECT, env={**os.environ, "PYTHONPATH": str(PROJECT), "MALLOC_ARENA_MAX": "2"})
    marks: list[float] = json.loads(done.stdout)
    return marks


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    runs = [one_run() for _ in range(args.runs)]
    marks = [statistics.median(column) for column in zip(*runs, strict=True)]
    print(f"RSS of one fresh process, median of {args.runs}; each line what a group adds to the ones above it")
    print(f"{'bare interpreter (the baseline)':60} {marks[0]:6.1f} MB")
    for (label, _), before, after in zip(GROUPS, marks[:-1], marks[1:], strict=True):
        print(f"{'+ ' + label:60} {after - before:+6.1f} MB  = {after:5.1f} MB ({after / marks[0]:.2f}x the baseline)")


if __name__ == "__main__":
    main()
