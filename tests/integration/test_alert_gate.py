"""The alert gate against a real Prometheus evaluating a real alert rule: traffic comes back only when no critical alert fires.

Prometheus scrapes a small exporter the test controls (a database replica's
lag) and evaluates two rules every second: ``ReplicaLagging`` (critical while
the lag is over 60 s) and ``WorkerStopped`` (critical, always firing: an alert
the window causes on purpose, covered by the window's own silence).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from demo.harness.consul import ConsulAgentProcess
from demo.harness.processes import wait_until
from tests.fixtures.alertmanager import alertmanager
from tests.fixtures.maintctl import maintctl
from tests.fixtures.prometheus import PrometheusServer, prometheus
from tests.fixtures.webhooks import webhook_receiver
from tests.fixtures.windows import WindowFleet, window_fleet

RULES = """groups:
  - name: platform
    interval: 1s
    rules:
      - alert: ReplicaLagging
        expr: replica_lag_seconds > 60
        labels: {severity: critical}
      - alert: WorkerStopped
        expr: replica_lag_seconds >= 0
        labels: {severity: critical}
"""


class Exporter:
    """``/metrics`` with one gauge the test sets."""

    def __init__(self) -> None:
        self.lag = 0.0


@contextmanager
def exporter() -> Iterator[tuple[Exporter, int]]:
    state = Exporter()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = f"# TYPE replica_lag_seconds gauge\nreplica_lag_seconds {state.lag}\n".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="exporter", daemon=True)
    thread.start()
    try:
        yield state, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _config(port: int, environment: str) -> str:
    return f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [rules.yml]
scrape_configs:
  - job_name: replica
    static_configs:
      - targets: ["127.0.0.1:{port}"]
        labels: {{env: "{environment}"}}
"""


def _firing(prom: PrometheusServer) -> set[str]:
    return {a["labels"]["alertname"] for a in prom.api("alerts")["alerts"] if a["state"] == "firing"}


def _edge(fleet: WindowFleet) -> dict:
    return fleet.status("edge-1") or {}


def test_traffic_waits_for_critical_alerts_and_an_unreachable_prometheus_holds_until_overridden(
        consul_server: ConsulAgentProcess, environment: str, tmp_path: Path) -> None:
    with exporter() as (lag, port), alertmanager(tmp_path / "am") as am, webhook_receiver() as chat:
        (tmp_path / "prom").mkdir()
        (tmp_path / "prom" / "rules.yml").write_text(RULES)
        with prometheus(tmp_path / "prom", _config(port, environment)) as prom:
            gate = {"url": prom.url, "selector": 'severity="critical"', "recheck_seconds": 0.3, "timeout_seconds": 2}
            silence = {"url": am.url, "lease_seconds": 600, "renew_seconds": 60,
                       "matchers": [{"name": "alertname", "value": "WorkerStopped"}]}
            team = {"chat": {"url": chat.url, "blocked_after_seconds": 0.5}, "attempts": 2, "backoff_seconds": 0.1}
            with window_fleet(consul_server, environment, tmp_path / "fleet", alert_gate=gate, alertmanager=silence, notices=team) as fleet:
                fleet.add("edge-1", ["edge"])
                fleet.add("worker-1", ["worker"])
                fleet.wait_states("active")
                lag.lag = 300
                wait_until(lambda: _firing(prom) == {"ReplicaLagging", "WorkerStopped"}, 20, what="both alerts firing in Prometheus")

                ends = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
                on = consul_server.kv_put(f"maintenance/{environment}/desired", json.dumps({"mode": "maintenance", "reason": "SQL-B",
                                                                                             "ends_at": ends}))
                fleet.wait_states("maintenance", intent_index=on)  # the gate never holds a window's entry
                wait_until(lambda: any("overrun" in t for t in _chat(chat)), 10, what="the overrun told to the team")
                off = consul_server.kv_put(f"maintenance/{environment}/desired", "active")
                held = wait_until(lambda: "ReplicaLagging" in (_edge(fleet).get("blocked_on") or "") and _edge(fleet), 15,
                                  what="the edge held by the lagging replica")
                assert held["state"] == "exiting" and "WorkerStopped" not in held["blocked_on"], "the window's own silence is left out"
                assert fleet.status("worker-1")["state"] == "active", "the roles before the edge came back"  # type: ignore[index]
                waited = maintctl(consul_server, environment, "wait", "--timeout", "1s")
                assert waited.exit_code == 1 and "ReplicaLagging" in waited.output, waited.output
                wait_until(lambda: any("edge-1 has been exiting and blocked" in t and "ReplicaLagging" in t for t in _chat(chat)), 10,
                           what="the block told to the team")

                lag.lag = 5  # the replica caught up: the rule stops firing, the gate opens at its next look
                fleet.wait_states("active", intent_index=off, timeout=20)

                assert maintctl(consul_server, environment, "on", "--reason", "SQL-B again", "--for", "30m").exit_code == 0
                fleet.wait_states("maintenance")
                prom.stop()  # no answer is not "nothing fires"
                assert maintctl(consul_server, environment, "off", "--reason", "done").exit_code == 0
                off = json.loads(maintctl(consul_server, environment, "status", "--json").stdout)["desired"]["modify_index"]
                stuck = wait_until(lambda: "unreachable" in (_edge(fleet).get("error") or "") and _edge(fleet), 15,
                                   what="the edge holding on an unreachable Prometheus")
                assert stuck["state"] == "exiting" and "cannot tell whether alerts fire" in stuck["error"]
                overridden = maintctl(consul_server, environment, "alert-gate", "override", "--reason", "Prometheus down with SQL-B",
                                      "--by", "alice")
                assert overridden.exit_code == 0, overridden.output
                fleet.wait_states("active", intent_index=off, timeout=15)
                wait_until(lambda: len([t for t in _chat(chat) if "maintenance ended" in t]) == 2, 10, what="the second end told to the team")
                log = (tmp_path / "fleet" / "agents.log").read_text()
                history = json.loads(maintctl(consul_server, environment, "history", "--json").stdout)
    assert "alert gate overridden for this window" in log and "Prometheus down with SQL-B" in log
    assert [(o["by"], o["reason"]) for o in history[0]["alert_gate_overrides"]] == [("alice", "Prometheus down with SQL-B")]
    texts = _chat(chat)
    assert len([t for t in texts if "overrun" in t]) == 1, "two boxes saw it, the team hears it once"
    assert len([t for t in texts if "maintenance started" in t]) == 2


def _chat(receiver: object) -> list[str]:
    return [r.doc["text"] for r in receiver.delivered()]  # type: ignore[attr-defined]
