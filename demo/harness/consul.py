"""A real Consul agent for tests: ``consul agent -dev`` on loopback, free ports, stopped by PID.

``ConsulServer`` is a plain class (the demo fleet uses it too); ``ConsulClientAgent``
is an extra client agent on another loopback address (127.0.0.2, ...) joined
to a server, so several "boxes" each have their own Consul agent.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import requests

from demo.harness.processes import ManagedProcess, consul_binary, free_ports, wait_until


class ConsulAgentProcess:
    def __init__(self, workdir: Path, bind: str = "127.0.0.1", node: str = "consul-dev", dev: bool = True,
                 join: str | None = None, extra_config: dict | None = None):
        self.workdir = workdir
        self.bind = bind
        self.node = node
        self.dev = dev
        self.join = join
        names = ("http", "dns", "serf_lan", "serf_wan", "server", "grpc")
        self.ports = dict(zip(names, free_ports(len(names), bind), strict=True))
        self.extra_config = extra_config or {}
        self.process: ManagedProcess | None = None

    @property
    def http_port(self) -> int:
        return self.ports["http"]

    @property
    def address(self) -> str:
        return f"http://{self.bind}:{self.http_port}"

    @property
    def serf_address(self) -> str:
        return f"{self.bind}:{self.ports['serf_lan']}"

    def start(self, timeout: float = 30.0) -> ConsulAgentProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = {
            "node_name": self.node,
            "bind_addr": self.bind,
            "client_addr": self.bind,
            "advertise_addr": self.bind,
            "ports": {"http": self.ports["http"], "dns": self.ports["dns"], "serf_lan": self.ports["serf_lan"],
                      "serf_wan": self.ports["serf_wan"], "server": self.ports["server"], "grpc": self.ports["grpc"]},
            "limits": {"http_max_conns_per_client": 2000},
            "disable_update_check": True,
            "log_level": "warn",
            "session_ttl_min": "10s",
            **self.extra_config,
        }
        (self.workdir / "config.json").write_text(json.dumps(config))
        argv = [consul_binary(), "agent", "-config-file", str(self.workdir / "config.json")]
        if self.dev:
            argv.append("-dev")
        else:
            argv += ["-data-dir", str(self.workdir / "data")]
        if self.join:
            argv += ["-retry-join", self.join]
        self.process = ManagedProcess(argv, self.workdir / "consul.log")
        try:
            wait_until(self._ready, timeout, interval=0.1, what=f"consul agent {self.node} on {self.address}")
        except TimeoutError:
            output = self.process.output()[-2000:]
            self.stop()
            raise RuntimeError(f"consul did not become ready:\n{output}") from None
        return self

    def _ready(self) -> bool:
        if self.process is None or not self.process.alive():
            raise RuntimeError(f"consul exited: {self.process.output()[-1000:] if self.process else ''}")
        leader = requests.get(f"{self.address}/v1/status/leader", timeout=1).json()
        if not leader:
            return False
        # The node must be registered in the catalog before sessions can use it.
        node = requests.get(f"{self.address}/v1/catalog/node/{self.node}", timeout=1)
        return node.status_code == 200 and node.json() is not None

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()

    def restart(self, timeout: float = 30.0) -> None:
        self.stop()
        self.start(timeout)

    # small conveniences for tests
    def kv_put(self, key: str, value: str | bytes) -> int:
        requests.put(f"{self.address}/v1/kv/{key}", data=value, timeout=5).raise_for_status()
        return self.kv_index(key)

    def kv_index(self, key: str) -> int:
        r = requests.get(f"{self.address}/v1/kv/{key}", timeout=5)
        return r.json()[0]["ModifyIndex"] if r.status_code == 200 else 0

    def kv_get_json(self, key: str) -> dict | None:
        r = requests.get(f"{self.address}/v1/kv/{key}?raw", timeout=5)
        return r.json() if r.status_code == 200 else None

    def kv_delete(self, key: str) -> None:
        requests.delete(f"{self.address}/v1/kv/{key}", timeout=5).raise_for_status()


def start_dev_consul(workdir: Path | None = None) -> ConsulAgentProcess:
    return ConsulAgentProcess(workdir or Path(tempfile.mkdtemp(prefix="consul-"))).start()


def cleanup(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
