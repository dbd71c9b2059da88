"""The dashboard and the alerting rules only use metrics the agent really exports."""

from __future__ import annotations

import json
import re

from agent.daemon.local.metrics import AgentMetrics
from demo.harness.processes import PROJECT

_METRIC = re.compile(r"\bmaintenance_[a-z_]+")


_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "info": ("_info",)}


def _exported() -> set[str]:
    """Every series name the agent's registry can expose (labelled counters have no sample until used)."""
    metrics = AgentMetrics()
    metrics.count_requests_of(type("Source", (), {"requests": 0})())
    names = set()
    for family in metrics.registry.collect():
        names.add(family.name)
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ()))
    return names


def _used(text: str) -> set[str]:
    # Label names of Enum metrics repeat the metric's name; label values are not metrics.
    return {m for m in _METRIC.findall(text) if not m.endswith("_")}


def test_dashboard_is_grafana_json_with_queries_on_exported_metrics() -> None:
    dashboard = json.loads((PROJECT / "deploy/grafana/maintenance-agent.json").read_text())
    assert dashboard["uid"] and dashboard["panels"]
    titles = [p["title"] for p in dashboard["panels"]]
    for wanted in ("Fleet: boxes by state", "Per box: state", "Transitions", "Window overrun per box"):
        assert wanted in titles
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    unknown = _used(exprs) - _exported()
    assert not unknown, f"dashboard uses metrics the agent does not export: {sorted(unknown)}"


def test_rules_use_exported_metrics_only() -> None:
    text = (PROJECT / "deploy/prometheus/rules/maintenance.rules.yml").read_text()
    exprs = " ".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    unknown = _used(exprs) - _exported()
    assert not unknown, f"rules use metrics the agent does not export: {sorted(unknown)}"
    names = set(re.findall(r"- alert: (\w+)", text))
    assert {"MaintenanceBoxDiverged", "MaintenanceGateBlocked", "MaintenanceStepFailing", "MaintenanceWindowOverrun",
            "MaintenanceAgentDown"} <= names
