"""The shipped scrape config and rules in a real Prometheus that finds the agents through a real Consul.

Prometheus (with Consul discovery, see tests/fixtures/prometheus.py) runs
deploy/prometheus/prometheus.yml with only what a test must change: the
intervals, the Consul and Alertmanager addresses, and the metrics port (the
agent listens on a free port, not 9464). The relabelling is the shipped one,
so the labels asserted here are the ones production alerts carry.
"""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
import yaml

from demo.harness.consul import ConsulAgentProcess
from demo.harness.processes import PROJECT, free_port, wait_until
from tests.fixtures.alertmanager import alertmanager
from tests.fixtures.prometheus import consul_sd_binary, prometheus
from tests.fixtures.windows import window_fleet

SHIPPED = PROJECT / "deploy" / "prometheus"


def scrape_config(consul_address: str, alertmanager_url: str, metrics_port: int) -> str:
    doc: dict[str, Any] = yaml.safe_load((SHIPPED / "prometheus.yml").read_text())
    doc["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    doc["rule_files"] = [str(SHIPPED / rule) for rule in doc["rule_files"]]
    doc["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [alertmanager_url.removeprefix("http://")]
    job = next(j for j in doc["scrape_configs"] if j["job_name"] == "maintenance-agent")
    job["consul_sd_configs"][0]["server"] = consul_address.removeprefix("http://")
    job["consul_sd_configs"][0]["refresh_interval"] = "1s"
    address = next(r for r in job["relabel_configs"] if r["target_label"] == "__address__")
    assert address["replacement"] == "$1:9464"
    address["replacement"] = f"$1:{metrics_port}"
    doc["scrape_configs"] = [job]
    return yaml.safe_dump(doc)




def test_shipped_scrape_config_is_valid_for_a_prometheus_with_consul_discovery() -> None:
    result = subprocess.run([consul_sd_binary("promtool"), "check", "config", "prometheus.yml"], capture_output=True, text=True,
                            cwd=SHIPPED, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_consul_discovered_agents_carry_env_and_node_into_series_and_alert_text(
        consul_server: ConsulAgentProcess, environment: str, tmp_path: Path) -> None:
    port = free_port()
    with alertmanager(tmp_path / "am") as am, window_fleet(consul_server, environment, tmp_path / "fleet") as fleet:
        fleet.add("worker-1", ["worker"], metrics={"listen": f"127.0.0.1:{port}"})
        fleet.wait_states("active")
        with prometheus(tmp_path / "prom", scrape_config(consul_server.address, am.url, port)) as prom:
            def state_series() -> list[dict[str, Any]] | None:
                found = prom.api("query", query=f'maintenance_agent_state{{env="{environment}"}}')["result"]
                return found or None

            series = wait_until(state_series, 30, what="maintenance_agent_state scraped through Consul discovery")
            assert {s["metric"]["node"] for s in series} == {"worker-1"}
            assert {s["metric"]["env"] for s in series} == {environment}
            assert {s["metric"]["job"] for s in series} == {"maintenance-agent"}

            # A window announced to end 16 minutes ago: MaintenanceWindowOverrunLong fires at once (no `for`).
            ends = datetime.now(UTC) - timedelta(minutes=16)
            intent = {"mode": "maintenance", "reason": "labels", "ends_at": ends.isoformat()}
            index = consul_server.kv_put(f"maintenance/{environment}/desired", json.dumps(intent))
            fleet.wait_states("maintenance", intent_index=index)

            def fired() -> dict[str, Any] | None:
                for alert in prom.api("alerts")["alerts"]:
                    labels = alert["labels"]
                    if labels["alertname"] == "MaintenanceWindowOverrunLong" and labels.get("env") == environment and alert["state"] == "firing":
                        return alert
                return None

            alert = wait_until(fired, 30, what="MaintenanceWindowOverrunLong firing")
            assert alert["labels"]["node"] == "worker-1"
            assert alert["annotations"]["summary"] == (
                f"maintenance window of {environment} is more than 15 minutes past its announced end on worker-1")

            def delivered() -> dict[str, Any] | None:
                for sent in requests.get(f"{am.url}/api/v2/alerts", timeout=5).json():
                    if sent["labels"].get("alertname") == "MaintenanceWindowOverrunLong" and sent["labels"].get("env") == environment:
                        return sent
                return None

            sent = wait_until(delivered, 30, what="the alert in Alertmanager")
            assert sent["labels"]["node"] == "worker-1" and environment in sent["annotations"]["summary"]
