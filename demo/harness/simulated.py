"""SimulatedFleet: boxes that exist in Consul as real agents make them exist, without an agent process.

Each simulated box is registered in Consul's catalog (its own node, the
``maintenance-agent`` service with ``env:`` and ``role:`` tags, ``Meta.box``
and a passing service check), and its status key is written in the shape a
real agent writes (``agent.core.model.Status``). Gates of real agents cannot
tell them from real boxes; the fleet benchmark and the fleet-size tests run a
few real agents among hundreds of these.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import requests

from agent.clients.consul import AGENT_SERVICE
from agent.core.model import State, Status


class SimulatedFleet:
    def __init__(self, consul_address: str, environment: str, boxes: list[tuple[str, tuple[str, ...]]], prefix: str = "maintenance",
                 writers: int = 8):
        self.address = consul_address.rstrip("/")
        self.environment = environment
        self.boxes = dict(boxes)
        self.prefix = f"{prefix}/{environment}"
        self.writers = writers
        self._http = requests.Session()
        self._http.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=writers))
        self.writes = 0
        self.written_at: dict[str, float] = {}  # box -> when its last status write was acknowledged (epoch seconds)

    def service_id(self, box: str) -> str:
        return f"{AGENT_SERVICE}:{self.environment}:{box}"

    def register(self) -> None:
        """Every box in the catalog, alive (a passing check), as its agent would register it."""
        self._each(self._register, list(self.boxes))

    def deregister(self) -> None:
        self._each(lambda box: self._http.put(f"{self.address}/v1/catalog/deregister", timeout=10,
                                               data=json.dumps({"Node": f"sim-{box}"})).raise_for_status(), list(self.boxes))

    def set_alive(self, box: str, alive: bool) -> None:
        self._register(box, "passing" if alive else "critical")

    def report(self, boxes: list[str], state: str, intent_index: int, progress: str | None = None) -> None:
        """Write these boxes' status keys (all their roles at ``progress``, default ``state``), in parallel."""
        self._each(lambda box: self._write(box, state, intent_index, progress or state), boxes)

    def status(self, box: str, state: str, intent_index: int, progress: str) -> Status:
        roles = self.boxes[box]
        return Status(node=box, roles=roles, state=State(state), intent_index=intent_index, since=datetime.now(UTC),
                      version="simulated", progress={r: progress for r in roles})

    def _write(self, box: str, state: str, intent_index: int, progress: str) -> None:
        body = self.status(box, state, intent_index, progress).to_json()
        self._http.put(f"{self.address}/v1/kv/{self.prefix}/status/{box}", data=body, timeout=10).raise_for_status()
        self.written_at[box] = time.time()
        self.writes += 1

    def _register(self, box: str, check_status: str = "passing") -> None:
        sid = self.service_id(box)
        body = {
            "Node": f"sim-{box}", "Address": "127.0.0.1",
            "Service": {"ID": sid, "Service": AGENT_SERVICE, "Tags": [f"env:{self.environment}", *(f"role:{r}" for r in self.boxes[box])],
                        "Meta": {"box": box, "env": self.environment, "version": "simulated"}},
            "Check": {"CheckID": f"{sid}:alive", "Name": "maintenance-agent alive", "Status": check_status, "ServiceID": sid},
        }
        self._http.put(f"{self.address}/v1/catalog/register", data=json.dumps(body), timeout=10).raise_for_status()

    def _each(self, fn: Callable[[str], object], boxes: list[str]) -> None:
        with ThreadPoolExecutor(self.writers) as pool:
            for _ in pool.map(fn, boxes):
                pass

    def close(self) -> None:
        self._http.close()


class FleetDriver:
    """Moves the simulated boxes through one transition as their agents would, gate by gate, and records when.

    On the flip every simulated box reports ``entering``/``exiting``; then, for
    each role in the direction's order, once every box (real or simulated) of
    the earlier roles reports that role settled for the intent, the simulated
    boxes of the role take ``step_seconds`` and report it settled.

    The driver is not what is measured, so it must not load Consul or the CPU
    the real agents share: it knows what it wrote for the simulated boxes, and
    reads only the real boxes' status keys, one blocking query each
    (``RealStatuses``), instead of re-reading the whole status prefix.
    """

    def __init__(self, fleet: SimulatedFleet, members: dict[str, tuple[str, ...]], order: list[str], step_seconds: float):
        self.fleet = fleet
        self.members = members  # every box of the environment, real and simulated
        self.order = order
        self.step_seconds = step_seconds
        self.settled_at: dict[str, dict[str, float]] = {}  # role -> box -> when a simulated box reported it settled
        self.real = [b for b in members if b not in fleet.boxes]

    def run(self, intent_index: int, mode: str, timeout: float = 300.0) -> float:
        """Drive one transition; return the time (epoch seconds) every box reported the target state."""
        settled, moving = ("maintenance", "entering") if mode == "maintenance" else ("active", "exiting")
        sequence = self.order if mode == "maintenance" else list(reversed(self.order))
        simulated = list(self.fleet.boxes)
        deadline = time.monotonic() + timeout
        with RealStatuses(self.fleet.address, self.fleet.prefix, self.real) as real:
            self.fleet.report(simulated, moving, intent_index)
            for position, role in enumerate(sequence):
                earlier = sequence[:position]
                real.wait_until(lambda statuses, earlier=earlier: all(
                    _settled(statuses.get(box), r, intent_index, settled)
                    for box in self.real for r in self.members[box] if r in earlier), deadline)
                mine = [b for b in simulated if role in self.fleet.boxes[b]]
                if not mine:
                    continue
                time.sleep(self.step_seconds)
                self.fleet.report(mine, settled, intent_index)
                self.settled_at.setdefault(role, {}).update({b: self.fleet.written_at[b] for b in mine})
            real.wait_until(lambda statuses: all((s := statuses.get(b)) is not None and s.get("state") == settled
                                                 and s.get("intent_index") == intent_index for b in self.real), deadline)
        return time.time()


class RealStatuses:
    """The real boxes' status keys, each followed by its own blocking query (a thread each, for one transition)."""

    def __init__(self, address: str, prefix: str, boxes: list[str], wait: str = "10s"):
        self.address, self.prefix, self.boxes, self.wait = address, prefix, boxes, wait
        self.statuses: dict[str, dict] = {}
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._follow, args=(box,), daemon=True) for box in boxes]

    def __enter__(self) -> RealStatuses:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()  # each thread ends when its query returns (at most ``wait``); nothing waits for them

    def wait_until(self, done: Callable[[dict[str, dict]], bool], deadline: float) -> None:
        with self._changed:
            while not done(self.statuses):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("the fleet did not get there in time")
                self._changed.wait(min(left, 1.0))

    def _follow(self, box: str) -> None:
        url = f"{self.address}/v1/kv/{self.prefix}/status/{box}"
        index = 0
        with requests.Session() as http:
            while not self._stop.is_set():
                try:
                    answer = http.get(f"{url}?index={index}&wait={self.wait}" if index else url, timeout=30)
                except requests.RequestException:
                    time.sleep(0.2)
                    continue
                if answer.status_code not in (200, 404):  # 429/5xx: no index to block on; keep what was seen, back off
                    time.sleep(0.5)
                    continue
                index = max(int(answer.headers.get("X-Consul-Index", 1)), 1)
                status = None
                if answer.status_code == 200:
                    try:
                        status = json.loads(base64.b64decode(answer.json()[0]["Value"] or b""))
                    except ValueError:
                        status = None
                with self._changed:
                    if status is None:
                        self.statuses.pop(box, None)
                    else:
                        self.statuses[box] = status
                    self._changed.notify_all()


def _settled(status: dict | None, role: str, intent_index: int, settled: str) -> bool:
    return status is not None and status.get("intent_index") == intent_index and status.get("progress", {}).get(role, status.get("state")) == settled
