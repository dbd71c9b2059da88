"""The observability pack: promtool checks the rules and the scrape config and runs the rules' unit tests.

promtool is Debian's ``prometheus`` package (scripts/install-deps); a missing
binary fails the test, it never skips.
"""

from __future__ import annotations

import subprocess

from demo.harness.processes import PROJECT, require_binary

PROMETHEUS = PROJECT / "deploy" / "prometheus"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_binary("promtool"), *args], capture_output=True, text=True, cwd=PROMETHEUS, timeout=60)


def test_rules_are_valid() -> None:
    result = _promtool("check", "rules", "rules/maintenance.rules.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 15 rules found" in result.stdout


def test_rules_unit_tests_pass() -> None:
    result = _promtool("test", "rules", *sorted(str(p.relative_to(PROMETHEUS)) for p in (PROMETHEUS / "tests").glob("*.yml")))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_dns_sd_scrape_config_is_valid_for_debians_prometheus() -> None:
    """Debian bookworm's Prometheus has no consul_sd_configs: prometheus.dns-sd.yml is its variant.

    prometheus.yml itself is checked and run by a Prometheus with Consul
    discovery in test_prometheus_consul_sd.py.
    """
    result = _promtool("check", "config", "prometheus.dns-sd.yml")
    assert result.returncode == 0, result.stdout + result.stderr
