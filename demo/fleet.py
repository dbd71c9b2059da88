"""DemoFleet: the prod shape on loopback, with real services, started and stopped by PID.

    1 edge (HAProxy in front of both web apps), 2 web, 2 worker, 1 scheduler

One Consul server on 127.0.0.1, and one Consul client agent per box on
127.0.0.2, 127.0.0.3, ... joined to it, so each box has its own node (web's
``consul maint`` is per node). Web boxes serve a small UI/API app on their
own address; worker and scheduler boxes run a real supervisord each. Every
box runs its own ``maintenance-agent`` *process* (so a test can SIGKILL it),
configured like a real box. The demo (``python3 -m demo``) and the
end-to-end tests both drive this class.
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import requests

from demo.harness.agents import AgentProcess, agent_doc, status_of
from demo.harness.consul import ConsulAgentProcess
from demo.harness.haproxy import HAProxyUnderTest, edge_section
from demo.harness.processes import free_port, wait_until
from demo.harness.supervisor import SupervisordLauncher
from demo.webapp import API_MARKER, UI_MARKER, WebApp

PROD_SHAPE: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("edge-1", ("edge",)),
    ("web-1", ("web",)),
    ("web-2", ("web",)),
    ("worker-1", ("worker",)),
    ("worker-2", ("worker",)),
    ("sched-1", ("scheduler",)),
)
STAFF_ADDRESS = "127.0.0.100"  # in HAProxy's internal allowlist: reaches the real backends
_JOB = f"{sys.executable} -c 'while True: __import__(\"time\").sleep(0.5)'"
WORKER_PROGRAMS = {
    "billing-worker": {"command": "sleep 100000"},
    "ledger-sync": {"command": _JOB},
    # Stopped before any window: must still be stopped after one.
    "report-worker": {"command": "sleep 100000", "autostart": "false"},
}
SCHEDULER_PROGRAMS = {"nightly-export": {"command": _JOB}}


@dataclass
class Box:
    name: str
    roles: tuple[str, ...]
    address: str
    consul: ConsulAgentProcess
    doc: dict = field(default_factory=dict)
    agent: AgentProcess | None = None
    app: WebApp | None = None
    supervisor: SupervisordLauncher | None = None


class DemoFleet:
    def __init__(self, workdir: Path, environment: str = "prod", shape=PROD_SHAPE):
        self.workdir = Path(workdir)
        self.environment = environment
        self.shape = shape
        self.server: ConsulAgentProcess | None = None
        self.boxes: dict[str, Box] = {}
        self.haproxy: HAProxyUnderTest | None = None
        self._restarts = 0

    # -- life cycle --------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> DemoFleet:
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, timeout: float) -> None:
        self.server = ConsulAgentProcess(self.workdir / "consul-server", node="consul-server").start()
        for n, (name, roles) in enumerate(self.shape, start=2):
            address = f"127.0.0.{n}"
            consul = ConsulAgentProcess(self.workdir / f"consul-{name}", bind=address, node=name, dev=False,
                                        join=self.server.serf_address, extra_config={"server": False})
            self.boxes[name] = Box(name, roles, address, consul)
        for box in self.boxes.values():
            box.consul.start(timeout)
        self._start_services()
        for box in self.boxes.values():
            box.doc = self._agent_doc(box)
            box.agent = AgentProcess(box.doc, self.workdir / "agents").start()
        self.wait_for("active", index=None, timeout=timeout)

    def _start_services(self) -> None:
        webs = [b for b in self.boxes.values() if "web" in b.roles]
        for box in webs:
            box.app = WebApp(box.name, box.address, 0, self.workdir / f"{box.name}.fail").start()
        if any("edge" in b.roles for b in self.boxes.values()):
            self.haproxy = HAProxyUnderTest(self.workdir / "haproxy", backend_port=free_port(),
                                            internal_cidrs=(f"{STAFF_ADDRESS}/32",))
            self._point_haproxy_at(webs)
            self.haproxy.start()
        for box in self.boxes.values():
            if "worker" in box.roles:
                box.supervisor = SupervisordLauncher(WORKER_PROGRAMS, expect_running={"billing-worker:billing-worker", "ledger-sync:ledger-sync"})
                box.supervisor.start()
            if "scheduler" in box.roles:
                box.supervisor = SupervisordLauncher(SCHEDULER_PROGRAMS, expect_running={"nightly-export:nightly-export"})
                box.supervisor.start()

    def _point_haproxy_at(self, webs: list[Box]) -> None:
        """The shipped config has one backend server; the demo has two web boxes behind it."""
        assert self.haproxy is not None
        line = '\tserver app1 "${BACKEND_APP}" check inter 2s\n'
        text = self.haproxy.config_path.read_text()
        if line not in text:
            raise AssertionError("deploy/haproxy/haproxy.cfg lost its 'server app1' line; update demo/fleet.py")
        servers = "".join(f"\tserver {b.name} {b.app.address} check inter 2s\n" for b in webs if b.app)
        self.haproxy.config_path.write_text(text.replace(line, servers))

    def _agent_doc(self, box: Box) -> dict:
        doc = agent_doc(box.consul.address, self.environment, box.name, list(box.roles), self.workdir / "state" / box.name)
        doc["agent"]["retry_max_seconds"] = 3
        if box.app is not None:
            base = f"http://{box.app.address}"
            doc["web"] = {"smoke": [
                {"name": "ui", "url": f"{base}/", "expect_status": 200, "expect_body": UI_MARKER, "timeout_seconds": 2},
                {"name": "api", "url": f"{base}/api/health", "expect_status": 200, "expect_body": API_MARKER, "timeout_seconds": 2},
            ]}
        if "edge" in box.roles and self.haproxy is not None:
            edge = edge_section(self.haproxy, verify_attempts=3)
            doc["edge"] = _without_none(edge.model_dump(mode="json"))
            doc["edge"]["verify_active"] = [
                {"name": "ui", "url": self.haproxy.url("/"), "expect_status": 200, "expect_body": UI_MARKER, "timeout_seconds": 2},
                {"name": "api", "url": self.haproxy.url("/api/health"), "expect_status": 200, "expect_body": API_MARKER, "timeout_seconds": 2},
            ]
        if box.supervisor is not None and box.supervisor.sup is not None:
            connection = {"url": box.supervisor.sup.unix_url, "holds_check": False}  # supervisord is not systemd's here
            if "worker" in box.roles:
                doc["worker"] = {"backend": "supervisor", "services": sorted(WORKER_PROGRAMS), "timeout_seconds": 20,
                                 "supervisor": connection}
            if "scheduler" in box.roles:
                doc["scheduler"] = {"backend": "supervisor", "jobs": sorted(SCHEDULER_PROGRAMS), "timeout_seconds": 20,
                                    "drain_timeout_seconds": 10, "drain_poll_seconds": 0.5, "supervisor": connection}
        return doc

    def stop(self) -> None:
        """Stop everything by PID, the agents first; independent processes stop in parallel
        (a Consul client agent's graceful leave alone takes ~4 s)."""
        boxes = list(self.boxes.values())
        _in_parallel([b.agent.stop for b in boxes if b.agent])
        _in_parallel([b.supervisor.stop for b in boxes if b.supervisor] + [b.app.stop for b in boxes if b.app])
        if self.haproxy:
            self.haproxy.stop()
        _in_parallel([b.consul.stop for b in boxes])
        if self.server:
            self.server.stop()

    def __enter__(self) -> DemoFleet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- driving -------------------------------------------------------------------

    @property
    def desired_key(self) -> str:
        return f"maintenance/{self.environment}/desired"

    def flip(self, value: str | dict) -> int:
        assert self.server is not None
        body = value if isinstance(value, str) else json.dumps(value)
        return self.server.kv_put(self.desired_key, body)

    def statuses(self) -> dict[str, dict | None]:
        assert self.server is not None
        return {name: status_of(self.server.address, self.environment, name) for name in self.boxes}

    def wait_for(self, state: str, index: int | None, timeout: float = 60.0, boxes: list[str] | None = None) -> dict:
        names = boxes or list(self.boxes)

        def settled() -> dict | None:
            current = self.statuses()
            ok = all(current[n] and current[n]["state"] == state and (index is None or current[n]["intent_index"] == index)
                     for n in names)
            return current if ok else None

        try:
            return wait_until(settled, timeout, interval=0.05, what=f"{names} to be {state} for intent {index}")  # type: ignore[return-value]
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; now: {json.dumps(self.statuses(), indent=1)}") from None

    def kill_agent(self, name: str) -> None:
        agent = self.boxes[name].agent
        assert agent is not None
        agent.kill()

    def restart_agent(self, name: str) -> None:
        box = self.boxes[name]
        self._restarts += 1
        box.agent = AgentProcess(box.doc, self.workdir / "agents").start()

    def fail_web(self, name: str, failing: bool = True) -> None:
        flag = self.workdir / f"{name}.fail"
        if failing:
            flag.touch()
        else:
            flag.unlink(missing_ok=True)

    def running_programs(self, name: str) -> set[str]:
        box = self.boxes[name]
        assert box.supervisor is not None and box.supervisor.sup is not None
        return box.supervisor.sup.running()

    def node_in_maintenance(self, name: str) -> bool:
        box = self.boxes[name]
        return "_node_maintenance" in requests.get(f"{box.consul.address}/v1/agent/checks", timeout=5).json()

    # -- what happened ---------------------------------------------------------------

    def timeline(self) -> list[dict]:
        """Every step start/end, role settled and state change of every agent, in time order."""
        events = []
        for log in sorted((self.workdir / "agents").glob("*.log")):
            for line in log.read_text(errors="replace").splitlines():
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if event.get("event") in ("step acting", "step done", "role settled", "state changed", "step failed; will retry"):
                    event["at"] = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
                    events.append(event)
        return sorted(events, key=lambda e: e["at"])


def _without_none(value):
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


def _in_parallel(actions: list) -> None:
    """Run every action; raise the first error only after all have run (nothing is left running)."""
    with ThreadPoolExecutor(max_workers=max(1, len(actions))) as pool:
        futures = [pool.submit(action) for action in actions]
    errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        raise errors[0]
