"""The agent's footprint on a real box, per role: cgroup memory and RSS, against a baseline in the same box.

For each role a real box (``demo.harness.systemd_box``) is booted with the
agent installed as the README says, settled, and left idle for ``--seconds``.
Beside it, in the same box, a baseline runs as a transient unit
(``systemd-run``, Debian's python3, stdlib only) holding one blocking query on
the same key: the cheapest possible watcher. Read at the end, for both: the
unit's cgroup memory (``MemoryCurrent``: what the box's memory accounting
charges, page cache included) and the main process's RSS. Usage:

    python3 -m bench.box_footprint [--seconds 30] [--roles web,worker,scheduler,edge]
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from demo.harness.agent_box import AgentBox, edge_config, recording_unit, serve_haproxy
from demo.harness.box_install import build_wheels, venv_layer
from demo.harness.consul import ConsulAgentProcess
from demo.harness.haproxy import LoopbackBackend
from demo.harness.processes import free_port
from demo.harness.systemd_box import booted

BASELINE = ("import sys, urllib.request\n"
            "addr, key, index = sys.argv[1], sys.argv[2], 0\n"
            "while True:\n"
            "    url = f'{addr}/v1/kv/{key}' + (f'?index={index}&wait=60s' if index else '')\n"
            "    try:\n"
            "        answer = urllib.request.urlopen(url, timeout=75)\n"
            "    except urllib.error.HTTPError as error:\n"
            "        answer = error\n"
            "    index = max(int(answer.headers.get('X-Consul-Index', 1)), 1)\n")


def footprint(box: AgentBox, unit: str) -> tuple[float, float]:
    """(cgroup memory MB, RSS MB) of ``unit`` in the box."""
    memory = int(box.box.unit_property(unit, "MemoryCurrent")) / 2**20
    status = Path(f"/proc/{box.box.main_pid(unit)}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]
    return memory, rss


def role_setup(role: str, box: AgentBox, backend_port: int) -> dict[str, Any]:
    """Give the box what the role drives; return its config."""
    if role == "worker":
        for name in ("billing-worker.service", "mailer.service"):
            box.box.write(f"/etc/systemd/system/{name}", recording_unit(name))
        box.box.systemctl("daemon-reload")
        box.box.systemctl("enable", "--now", "billing-worker.service", "mailer.service")
        return box.config(["worker"], worker={"backend": "systemd", "services": ["billing-worker.service", "mailer.service"]})
    if role == "scheduler":
        box.box.write("/etc/systemd/system/report.timer", "[Timer]\nOnCalendar=hourly\n[Install]\nWantedBy=timers.target\n")
        box.box.write("/etc/systemd/system/report.service", recording_unit("report.service", "/bin/true", wanted_by=""))
        box.box.systemctl("daemon-reload")
        box.box.systemctl("enable", "--now", "report.timer")
        return box.config(["scheduler"], scheduler={"backend": "systemd", "jobs": ["report.timer"]})
    if role == "edge":
        return edge_config(box, f"http://127.0.0.1:{free_port()}")
    return box.config(["web"])


def measure(role: str, layer: Path, consul: ConsulAgentProcess, backend_port: int, seconds: float) -> dict[str, float]:
    with booted(f"bench-{role}", units=("haproxy.service",) if role == "edge" else (), layers=[layer]) as raw:
        box = AgentBox(raw, consul.address, f"fp{role}", f"bench-{role}")
        doc = role_setup(role, box, backend_port)
        box.install(doc, enable=False)
        if role == "edge":
            serve_haproxy(raw, doc["edge"]["verify_active"][0]["url"].rsplit("/", 1)[0], backend_port)
        raw.systemctl("enable", "--now", "maintenance-agent")
        box.wait_active()
        box.wait_status(state="active")
        raw.run("systemd-run", "--unit=baseline", "-p", "User=nobody", "-p", "MemoryAccounting=yes", "/usr/bin/python3",
                "-c", BASELINE, consul.address, f"maintenance/fp{role}/desired")
        time.sleep(seconds)
        agent_memory, agent_rss = footprint(box, "maintenance-agent")
        base_memory, base_rss = footprint(box, "baseline")
    return {"agent_memory": agent_memory, "agent_rss": agent_rss, "base_memory": base_memory, "base_rss": base_rss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--roles", default="web,worker,scheduler,edge")
    args = parser.parse_args()
    layer = venv_layer(build_wheels(Path(tempfile.mkdtemp(prefix="bench-wheels-"))))
    consul = ConsulAgentProcess(Path(tempfile.mkdtemp(prefix="bench-consul-"))).start()
    try:
        with LoopbackBackend() as backend:
            rows = {role: measure(role, layer, consul, backend.port, args.seconds) for role in args.roles.split(",")}
    finally:
        consul.stop()
    print(f"idle {args.seconds:g} s after settling, each role in its own real box")
    print("| role | agent cgroup memory | agent RSS | baseline cgroup memory | baseline RSS | RSS ratio |")
    print("|---|---|---|---|---|---|")
    for role, r in rows.items():
        print(f"| {role} | {r['agent_memory']:.1f} MB | {r['agent_rss']:.1f} MB | {r['base_memory']:.1f} MB | {r['base_rss']:.1f} MB "
              f"| {r['agent_rss'] / r['base_rss']:.2f} |")


if __name__ == "__main__":
    main()
