"""Reload HAProxy (as ``systemctl reload`` does) under keep-alive load and count the requests it drops.

deploy/haproxy/README.md prescribes a reload after editing the pattern files
(CIDRs, secrets, API paths). On a reload the old worker closes its idle
keep-alive connections; a request a client sends on one at that moment is
lost (the client sees the connection closed or reset instead of an answer).
HAProxy 2.6's ``option idle-close-on-response`` makes the old worker wait
for that next request, answer it with ``Connection: close``, and only then
close. This script measures both in the same run: the shipped config, and
the same config without that one line (the baseline).

    python3 bench/haproxy_reload.py --reloads 20 --threads 8

A loader is this same file run with ``--load URL``; it prints one JSON line.
"""

from __future__ import annotations

import argparse
import http.client
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

OPTION_LINE = "\toption\tidle-close-on-response\n"


def load_thread(host: str, port: int, stop_file: Path, counts: dict[str, int], lock: threading.Lock) -> None:
    """Keep-alive requests in a loop; a request without an answer is ``dropped``, an announced close is not."""
    local = {"requests": 0, "answered": 0, "dropped": 0, "closed_by_announce": 0}
    conn = http.client.HTTPConnection(host, port, timeout=5)
    while not stop_file.exists():
        local["requests"] += 1
        try:
            conn.request("GET", "/api/payments")
            response = conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException):
            local["dropped"] += 1
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=5)
            continue
        local["answered"] += 1
        if response.will_close:
            local["closed_by_announce"] += 1
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=5)
        time.sleep(0.001)  # a little idle time on the connection, as real clients have
    conn.close()
    with lock:
        for key, value in local.items():
            counts[key] = counts.get(key, 0) + value


def run_loader(url: str, threads: int, stop_file: Path) -> dict[str, int]:
    host, port = url.removeprefix("http://").split(":")
    counts: dict[str, int] = {}
    lock = threading.Lock()
    workers = [threading.Thread(target=load_thread, args=(host, int(port), stop_file, counts, lock)) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return counts


def measure(with_option: bool, reloads: int, threads: int, pause: float) -> dict[str, float]:
    """HAProxy (master-worker, shipped config, optionally without the option) reloaded ``reloads`` times under load."""
    from demo.harness.haproxy import HAProxyUnderTest, LoopbackBackend

    with tempfile.TemporaryDirectory(prefix="haproxy-reload-") as tmp, LoopbackBackend() as backend:
        hap = HAProxyUnderTest(Path(tmp) / "haproxy", backend.port, master_worker=True)
        text = hap.config_path.read_text()
        if OPTION_LINE not in text:
            raise SystemExit(f"the shipped haproxy.cfg lacks {OPTION_LINE.strip()!r}")
        if not with_option:
            hap.config_path.write_text(text.replace(OPTION_LINE, ""))
        with hap:
            stop_file = Path(tmp) / "stop"
            argv = [sys.executable, __file__, "--load", hap.url(""), "--threads", str(threads), "--stop-file", str(stop_file)]
            loader = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
            try:
                time.sleep(pause)
                for _ in range(reloads):
                    hap.reload()
                    time.sleep(pause)
            finally:
                stop_file.touch()
                out, _ = loader.communicate(timeout=30)
            totals: dict[str, float] = {"reloads": reloads, **json.loads(out)}
            return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reloads", type=int, default=20)
    parser.add_argument("--threads", type=int, default=8, help="keep-alive connections")
    parser.add_argument("--pause", type=float, default=0.3, help="seconds between reloads")
    parser.add_argument("--load", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--stop-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        print(json.dumps(run_loader(args.load, args.threads, args.stop_file)))
        return
    baseline = measure(False, args.reloads, args.threads, args.pause)
    shipped = measure(True, args.reloads, args.threads, args.pause)
    print(f"{'':>22} {'without option':>15} {'shipped':>10}")
    for key in ("reloads", "requests", "answered", "dropped", "closed_by_announce"):
        print(f"{key:>22} {baseline.get(key, 0):>15} {shipped.get(key, 0):>10}")
    for name, figures in (("without option", baseline), ("shipped", shipped)):
        rate = figures.get("dropped", 0) / max(1, figures.get("requests", 1))
        print(f"dropped per request, {name}: {rate:.2e}")
    sys.exit(1 if shipped.get("dropped") else 0)


if __name__ == "__main__":
    main()
