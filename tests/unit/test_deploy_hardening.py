"""The hardening shipped in deploy/: a dedicated user, no capabilities, a polkit rule allowing exactly the configured units and verbs."""

from __future__ import annotations

import json
import subprocess

from demo.harness.processes import PROJECT, require_binary

RULE = PROJECT / "deploy/polkit/50-maintenance-agent.rules"


def test_unit_runs_as_a_dedicated_user_with_no_capabilities() -> None:
    unit = (PROJECT / "deploy/systemd/maintenance-agent.service").read_text()
    assert "\nUser=maintenance-agent\n" in unit and "\nCapabilityBoundingSet=\n" in unit and "\nAmbientCapabilities=\n" in unit
    assert "\nType=notify\n" in unit and "\nWatchdogSec=90\n" in unit
    sysusers = [line for line in (PROJECT / "deploy/systemd/maintenance-agent.sysusers.conf").read_text().splitlines() if line and line[0] != "#"]
    assert sysusers == ['u maintenance-agent - "maintenance-agent (planned maintenance daemon)" /var/lib/maintenance-agent /usr/sbin/nologin']


def _decide(user: str, action: str, unit: str = "", verb: str = "") -> str:
    """Run the rule in node with a stand-in polkit object (same API as polkitd's duktape/mozjs)."""
    script = """
    var polkit = {Result: {YES: "yes", NO: "no", NOT_HANDLED: "not handled"}, rules: [],
                  addRule: function(f) { this.rules.push(f); }};
    %s
    var details = %s;
    var action = {id: %s, lookup: function(k) { return details[k]; }};
    console.log(polkit.rules[0](action, {user: %s}));
    """ % (RULE.read_text(), json.dumps({"unit": unit, "verb": verb}), json.dumps(action), json.dumps(user))  # noqa: UP031 - the JavaScript is full of braces
    node = require_binary("node")
    return subprocess.run([node, "-e", script], capture_output=True, text=True, timeout=30, check=True).stdout.strip()


def test_polkit_rule_allows_exactly_the_configured_units_and_verbs() -> None:
    manage = "org.freedesktop.systemd1.manage-units"
    assert _decide("maintenance-agent", manage, "billing-worker.service", "stop") == "yes"
    assert _decide("maintenance-agent", manage, "export.timer", "start") == "yes"
    assert _decide("maintenance-agent", manage, "billing-worker.service", "restart") == "no"
    assert _decide("maintenance-agent", manage, "sshd.service", "stop") == "no"
    assert _decide("maintenance-agent", "org.freedesktop.systemd1.manage-unit-files") == "not handled"
    assert _decide("someone-else", manage, "billing-worker.service", "stop") == "not handled"
