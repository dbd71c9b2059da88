"""What the operating system says about a process: TCP connections to a port, threads, RSS (from /proc, Linux)."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(fd_dir / fd)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def connections_to(pid: int, port: int) -> int:
    """Established or opening TCP connections of ``pid`` whose remote port is ``port`` (IPv4 and IPv6)."""
    mine = socket_inodes(pid)
    count = 0
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            state = fields[3]  # 01 established, 02 syn-sent
            if remote_port == port and state in ("01", "02") and fields[9] in mine:
                count += 1
    return count


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Peak:
    """The most a process was seen holding: TCP connections to one port, threads, RSS bytes."""

    connections: int = 0
    threads: int = 0
    rss: int = 0

    def max(self, other: Peak) -> Peak:
        return Peak(max(self.connections, other.connections), max(self.threads, other.threads), max(self.rss, other.rss))


class PeakSampler:
    """While in its ``with`` block, every ``every`` seconds, each named process's connections to ``port``, threads and RSS.

    Keeps the peak per name (``peaks``) and how many samples were taken (``samples``); a process gone meanwhile is
    skipped for that sample.
    """

    def __init__(self, pids: Mapping[str, int], port: int, every: float = 0.2):
        self.pids, self.port, self.every = dict(pids), port, every
        self.peaks: dict[str, Peak] = {}
        self.samples: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            for name, pid in self.pids.items():
                try:
                    now = Peak(connections_to(pid, self.port), threads(pid), rss_bytes(pid))
                except OSError:
                    continue
                self.peaks[name] = self.peaks.get(name, Peak()).max(now)
                self.samples[name] = self.samples.get(name, 0) + 1
