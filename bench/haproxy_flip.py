"""Flip the edge step under steady keep-alive load and count what clients got.

The claim to check: entering or leaving maintenance through the runtime API
drops no connection and never answers anything but the backend's answer or
the maintenance answer. This script starts the shipped HAProxy config (via the
test fixture) in front of a loopback backend, runs load generators in separate
processes (each one keep-alive connection per thread, bounded in requests and
time), flips EdgeTrafficStep apply/revert (with its verification) meanwhile,
and prints the figures. The maintenance message holds characters above
U+FFFF; a JSON answer whose message is not exactly it counts as ``other``.

    python3 bench/haproxy_flip.py --seconds 10 --loaders 2 --threads 4 --flip-every 0.2

A loader is this same file run with ``--load URL``; it prints one JSON line.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import structlog

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

BACKEND_MARKER = "backend-ok"
MAINT_MARKERS = ('"status":"maintenance"', 'data-maintenance="on"')
PATHS = ("/api/payments", "/dashboard")
MESSAGE = "flip bench \U0001f527\U0001f680 \U00010348 back soon"


def load_thread(host: str, port: int, deadline: float, max_requests: int, counts: dict[str, int], lock: threading.Lock) -> None:
    """One keep-alive connection; any exception or reconnect need is an error (the server must not close it)."""
    local = {"requests": 0, "backend": 0, "maintenance": 0, "other": 0, "errors": 0, "connections": 1}
    conn = http.client.HTTPConnection(host, port, timeout=5)
    while time.monotonic() < deadline and local["requests"] < max_requests:
        path = PATHS[local["requests"] % len(PATHS)]
        local["requests"] += 1
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read().decode(errors="replace")
        except (OSError, http.client.HTTPException):
            local["errors"] += 1
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=5)
            local["connections"] += 1
            continue
        if response.status == 200 and body.startswith(BACKEND_MARKER):
            local["backend"] += 1
        elif response.status == 503 and any(marker in body for marker in MAINT_MARKERS) and response.getheader("Retry-After") \
                and _message_intact(path, body):
            local["maintenance"] += 1
        else:
            local["other"] += 1
        if response.will_close:
            local["errors"] += 1  # the server announced it closes a keep-alive connection
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=5)
            local["connections"] += 1
    conn.close()
    with lock:
        for key, value in local.items():
            counts[key] = counts.get(key, 0) + value


def _message_intact(path: str, body: str) -> bool:
    """The API's JSON carries the message exactly; the page carries it as text."""
    if path.startswith("/api/"):
        try:
            return bool(json.loads(body)["message"] == MESSAGE)
        except (ValueError, KeyError):
            return False
    return MESSAGE in body


def run_loader(url: str, seconds: float, threads: int, max_requests: int) -> dict[str, int]:
    host, port = url.removeprefix("http://").split(":")
    counts: dict[str, int] = {}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    workers = [
        threading.Thread(target=load_thread, args=(host, int(port), deadline, max_requests, counts, lock)) for _ in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return counts


def run_bench(seconds: float, loaders: int, threads: int, flip_every: float, max_requests: int = 1_000_000) -> dict[str, float]:
    """Start HAProxy + backend, load from ``loaders`` processes, flip until they finish; return the totals."""
    from agent.core.model import Intent, Mode
    from agent.daemon.local.statefile import StateFile
    from agent.daemon.steps.base import StepContext
    from agent.daemon.steps.haproxy import EdgeTrafficStep
    from demo.harness.haproxy import HAProxyUnderTest, LoopbackBackend, edge_section

    with tempfile.TemporaryDirectory(prefix="haproxy-flip-") as tmp, LoopbackBackend() as backend:
        with HAProxyUnderTest(Path(tmp) / "haproxy", backend.port) as hap:
            step = EdgeTrafficStep(edge_section(hap))
            intent = Intent(mode=Mode.MAINTENANCE, index=1, reason="bench", message=MESSAGE)
            ctx = StepContext(intent=intent, node="bench", memory=StateFile(Path(tmp) / "state.json"))
            argv = [sys.executable, __file__, "--load", hap.url(""), "--seconds", str(seconds),
                    "--threads", str(threads), "--max-requests", str(max_requests)]
            procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) for _ in range(loaders)]
            flips = 0
            try:
                while any(p.poll() is None for p in procs):
                    (step.apply if flips % 2 == 0 else step.revert)(ctx)
                    flips += 1
                    time.sleep(flip_every)
                if flips % 2:
                    step.revert(ctx)
                    flips += 1
            finally:
                for proc in procs:
                    if proc.poll() is None:
                        proc.kill()
            totals: dict[str, float] = {"flips": flips}
            for proc in procs:
                out, _ = proc.communicate(timeout=30)
                for key, value in json.loads(out).items():
                    totals[key] = totals.get(key, 0) + value
            totals["seconds"] = seconds
            totals["requests_per_second"] = round(totals.get("requests", 0) / seconds)
            return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--loaders", type=int, default=2, help="load generator processes")
    parser.add_argument("--threads", type=int, default=4, help="keep-alive connections per loader")
    parser.add_argument("--flip-every", type=float, default=0.2, help="pause between flips, seconds")
    parser.add_argument("--max-requests", type=int, default=1_000_000, help="per connection")
    parser.add_argument("--load", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    if args.load:
        print(json.dumps(run_loader(args.load, args.seconds, args.threads, args.max_requests)))
        return
    totals = run_bench(args.seconds, args.loaders, args.threads, args.flip_every, args.max_requests)
    for key in ("requests", "errors", "other", "flips", "backend", "maintenance", "connections", "requests_per_second"):
        print(f"{key:>20}: {totals.get(key, 0)}")
    sys.exit(1 if totals.get("errors") or totals.get("other") else 0)


if __name__ == "__main__":
    main()
