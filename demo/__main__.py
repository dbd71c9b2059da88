"""The demo: a prod-shaped fleet on loopback goes into maintenance and back.

    python3 -m demo            (or scripts/demo, which installs what is missing first)

It starts real Consul agents (one server, one client per box on 127.0.0.x),
HAProxy in front of two web apps, supervisord on the worker and scheduler
boxes and one maintenance-agent process per box; then runs the operator's
commands (maintctl on / wait / status / off / history) and shows what a
browser, an API partner and a staff member get through HAProxy. Everything
is stopped by PID at the end, also on Ctrl-C or an error.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from demo.fleet import STAFF_ADDRESS, DemoFleet
from demo.harness.haproxy import http_get

console = Console()


def maintctl(fleet: DemoFleet, *args: str) -> int:
    argv = ["maintctl", "--consul", fleet.server.address, "--env", fleet.environment, *args]
    console.print(f"\n[bold cyan]$ {' '.join(argv)}[/]")
    return subprocess.run([sys.executable, "-m", "agent.cli.maintctl", *argv[1:]], check=False).returncode


FIXED = len("GET /api/payments") + len("status") + len("Retry-After") + 5 * 3 + 1
"""The request, status and Retry-After columns with every column's padding and border: what the caller and body share."""


def traffic_table(title: str, width: int) -> Table:
    """What each kind of caller gets. The status and ``Retry-After`` are the point of the demo: they keep their room at
    any width; the caller's name wraps (at least 14 columns) and the body gets the rest, cut with an ellipsis."""
    table = Table(title=title, show_lines=False)
    table.add_column("who", min_width=14, ratio=1)
    table.add_column("request", no_wrap=True)
    table.add_column("status", no_wrap=True, justify="right")
    table.add_column("Retry-After", no_wrap=True, justify="right")
    table.add_column("answer", no_wrap=True, overflow="ellipsis", max_width=max(12, min(60, width - FIXED - 14)))
    return table


def show_traffic(fleet: DemoFleet, title: str) -> None:
    table = traffic_table(title, console.width)
    probes = [
        ("browser", "/", None, {}),
        ("admin user", "/admin/", None, {}),
        ("API partner", "/api/payments", None, {}),
        ("staff (internal address)", "/", STAFF_ADDRESS, {}),
        ("staff (bypass header)", "/api/payments", None, {"X-Maintenance-Bypass": "staff-bypass-secret"}),
    ]
    for who, path, source, headers in probes:
        answer = http_get(fleet.haproxy.url(path), source=source, headers=headers)
        body = " ".join(answer.body.split())
        table.add_row(who, f"GET {path}", str(answer.status), answer.headers.get("retry-after", ""), body[:120])
    console.print(table)


def show_boxes(fleet: DemoFleet) -> None:
    table = Table(title="on the boxes")
    table.add_column("box", no_wrap=True)
    table.add_column("what")
    table.add_column("now", ratio=1)
    for name, box in fleet.boxes.items():
        if "web" in box.roles:
            table.add_row(name, "Consul node maintenance", "on" if fleet.node_in_maintenance(name) else "off")
        if box.supervisor is not None:
            running = sorted(p.split(":")[0] for p in fleet.running_programs(name))
            table.add_row(name, "supervisor programs running", ", ".join(running) or "(none)")
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, help="where the fleet keeps its files (default: a temp dir)")
    parser.add_argument("--pause", type=float, default=1.0, help="seconds to pause between acts")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="maintenance-demo-"))
    console.print(Panel.fit("maintenance-agent demo: 1 edge, 2 web, 2 worker, 1 scheduler on loopback\n"
                            f"files and logs: {workdir}", style="bold"))
    started = time.monotonic()
    with console.status("starting Consul (7 agents), HAProxy, 2 web apps, 3 supervisord, 6 agents..."):
        fleet = DemoFleet(workdir).start()
    try:
        console.print(f"fleet up in {time.monotonic() - started:.1f} s")
        maintctl(fleet, "status")
        show_traffic(fleet, "before: traffic through HAProxy")
        show_boxes(fleet)
        time.sleep(args.pause)

        maintctl(fleet, "on", "--reason", "SQL-A patch (demo)", "--for", "45m",
                 "--message", "BillPay is being upgraded. We will be back by 23:00.", "--by", "demo")
        maintctl(fleet, "wait", "--timeout", "2m")
        maintctl(fleet, "status")
        show_traffic(fleet, "during: traffic through HAProxy")
        show_boxes(fleet)
        time.sleep(args.pause)

        maintctl(fleet, "off", "--reason", "patch done (demo)", "--by", "demo")
        maintctl(fleet, "wait", "--timeout", "2m")
        maintctl(fleet, "status")
        show_traffic(fleet, "after: traffic through HAProxy")
        show_boxes(fleet)
        maintctl(fleet, "history")
    finally:
        with console.status("stopping every process by PID..."):
            fleet.stop()
        console.print("[bold green]demo done[/]: everything stopped.")


if __name__ == "__main__":
    main()
