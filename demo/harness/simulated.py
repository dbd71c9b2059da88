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
import time
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

    def _each(self, fn, boxes: list[str]) -> None:  # noqa: ANN001 - a small fan-out helper
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
    boxes of the role take ``step_seconds`` and report it settled. It reads
    the status prefix with one blocking query (the driver is not measured).
    """

    def __init__(self, fleet: SimulatedFleet, members: dict[str, tuple[str, ...]], order: list[str], step_seconds: float):
        self.fleet = fleet
        self.members = members  # every box of the environment, real and simulated
        self.order = order
        self.step_seconds = step_seconds
        self.settled_at: dict[str, dict[str, float]] = {}  # role -> box -> when a simulated box reported it settled
        self.reread_pause = 0.05  # at most 20 reads of the whole status prefix a second
        self._index = 0

    def run(self, intent_index: int, mode: str, timeout: float = 300.0) -> float:
        """Drive one transition; return the time (epoch seconds) every box reported the target state."""
        settled, moving = ("maintenance", "entering") if mode == "maintenance" else ("active", "exiting")
        sequence = self.order if mode == "maintenance" else list(reversed(self.order))
        simulated = list(self.fleet.boxes)
        self.fleet.report(simulated, moving, intent_index)
        deadline = time.monotonic() + timeout
        for position, role in enumerate(sequence):
            earlier = sequence[:position]
            self._wait(lambda statuses, earlier=earlier: all(
                _settled(statuses.get(box), r, intent_index, settled)
                for box, roles in self.members.items() for r in roles if r in earlier), deadline)
            mine = [b for b in simulated if role in self.fleet.boxes[b]]
            if not mine:
                continue
            time.sleep(self.step_seconds)
            self.fleet.report(mine, settled, intent_index)
            self.settled_at.setdefault(role, {}).update({b: self.fleet.written_at[b] for b in mine})
        self._wait(lambda statuses: all((s := statuses.get(b)) is not None and s.get("state") == settled and s.get("intent_index") == intent_index
                                        for b in self.members), deadline)
        return time.time()

    def _wait(self, done, deadline: float) -> None:  # noqa: ANN001 - a predicate on {box: status dict}
        prefix = f"{self.fleet.address}/v1/kv/{self.fleet.prefix}/status/"
        index = 0
        while time.monotonic() < deadline:
            time.sleep(self.reread_pause)  # the driver must not eat the CPU the real agents are measured on
            query = f"?recurse=1&index={index}&wait=10s" if index else "?recurse=1"
            answer = self.fleet._http.get(prefix + query, timeout=20)  # noqa: SLF001 - the fleet's own session
            index = max(int(answer.headers.get("X-Consul-Index", 1)), 1)
            items = answer.json() if answer.status_code == 200 else []
            statuses = {}
            for item in items:
                try:
                    statuses[item["Key"].rsplit("/", 1)[1]] = json.loads(base64.b64decode(item["Value"] or b""))
                except ValueError:
                    continue
            if done(statuses):
                return
        raise TimeoutError("the fleet did not get there in time")


def _settled(status: dict | None, role: str, intent_index: int, settled: str) -> bool:
    return status is not None and status.get("intent_index") == intent_index and status.get("progress", {}).get(role, status.get("state")) == settled
