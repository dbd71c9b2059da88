"""Three Consul servers on 127.0.0.1-3; the leader is killed while the fleet is entering.

Each box has its own Consul client agent (127.0.0.4-6, joined to all
servers) so node maintenance is per box, like production. The fleet has an
order (edge before web is not needed here: two web boxes and a worker whose
services stop slowly), the leader is SIGKILLed mid-entry; no box may act on
any intent but the one written, and every box finishes once a new leader is
elected.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import requests

from agent.daemon.app import Agent
from bench.figures import record
from demo.harness.agents import agent_doc, start_agent
from demo.harness.consul import ConsulAgentProcess
from demo.harness.processes import wait_until

FAST_RAFT = {"performance": {"raft_multiplier": 1}}


def _start_all(agents: list[ConsulAgentProcess]) -> None:
    errors: list[BaseException] = []

    def one(a: ConsulAgentProcess) -> None:
        try:
            a.start(timeout=60)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(a,)) for a in agents]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def _status(address: str, environment: str, box: str) -> dict | None:
    r = requests.get(f"{address}/v1/kv/maintenance/{environment}/status/{box}?raw&stale", timeout=3)
    return r.json() if r.status_code == 200 else None


@pytest.mark.slow
def test_leader_killed_while_entering(environment: str, tmp_path: Path) -> None:
    servers = [ConsulAgentProcess(tmp_path / f"s{i}", bind=f"127.0.0.{i}", node=f"server-{i}", dev=False,
                                  extra_config={"server": True, "bootstrap_expect": 3, **FAST_RAFT}) for i in (1, 2, 3)]
    peers = [s.serf_address for s in servers]
    for s in servers:
        s.extra_config["retry_join"] = [p for p in peers if p != s.serf_address]
    clients: list[ConsulAgentProcess] = []
    agents: list[Agent] = []
    try:
        _start_all(servers)
        clients = [ConsulAgentProcess(tmp_path / f"c{i}", bind=f"127.0.0.{i}", node=f"box-{i}", dev=False,
                                      extra_config={"retry_join": peers, **FAST_RAFT}) for i in (4, 5, 6)]
        _start_all(clients)
        boxes = {"web-4": clients[0], "web-5": clients[1], "wk-6": clients[2]}
        marker = tmp_path / "svc.running"
        marker.touch()
        for box, client in boxes.items():
            roles = ["worker"] if box.startswith("wk") else ["web"]
            extra = {}
            if box.startswith("wk"):  # stopping takes 3 s: the leader dies while the worker is entering
                extra["worker"] = {"backend": "command", "services": ["svc"], "timeout_seconds": 10,
                                   "commands": {"svc": {"stop": f"sleep 3; rm -f {marker}", "start": f"touch {marker}",
                                                        "status": f"test -f {marker}"}}}
            doc = agent_doc(client.address, environment, box, roles, tmp_path / f"state-{box}", **extra)
            doc["consul"].update({"wait_seconds": 10, "request_timeout_seconds": 2.0})
            agents.append(start_agent(doc))
        any_server = clients[0].address
        wait_until(lambda: all((s := _status(any_server, environment, b)) and s["state"] == "active" for b in boxes), 30,
                   what="fleet active")

        requests.put(f"{any_server}/v1/kv/maintenance/{environment}/desired", data="maintenance", timeout=5).raise_for_status()
        index = requests.get(f"{any_server}/v1/kv/maintenance/{environment}/desired", timeout=5).json()[0]["ModifyIndex"]
        wait_until(lambda: (s := _status(any_server, environment, "wk-6")) and s["state"] == "entering", 20, interval=0.05,
                   what="worker entering")
        leader = requests.get(f"{any_server}/v1/status/leader", timeout=5).json()  # "127.0.0.x:port"
        victim = next(s for s in servers if leader.startswith(s.bind + ":"))
        victim.kill()
        killed = time.monotonic()

        def finished() -> bool:
            return all((s := _status(any_server, environment, b)) and s["state"] == "maintenance" and s["intent_index"] == index
                       for b in boxes)

        wait_until(finished, 90, interval=0.3, what="the fleet in maintenance after a new leader")
        took = time.monotonic() - killed
        new_leader = requests.get(f"{any_server}/v1/status/leader", timeout=5).json()
        assert new_leader and new_leader != leader
        for agent in agents:
            assert agent.reconciler.intent is not None and agent.reconciler.intent.index == index, "acted on another value"
            assert agent.reconciler.state.value == "maintenance"
        for client in clients[:2]:
            assert "_node_maintenance" in requests.get(f"{client.address}/v1/agent/checks", timeout=5).json()
        assert not marker.exists()
        record("Consul leader killed while entering (3 servers)", faults=1, actions_lost=0,
               detail=f"fleet finished {took:.1f}s after the kill")
    finally:
        for agent in agents:
            agent.stop()
        for c in clients:
            c.stop()
        for s in servers:
            s.stop()
