"""The hardening shipped in deploy/, judged by systemd itself, and the unit, user and polkit rule agreeing with the agent."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

from agent.cli.agent_main import cli as agent_cli
from agent.config.roles import HooksSection, SchedulerSection, WorkerSection
from agent.config.schema import AgentSection, load
from agent.core.model import Role
from agent.install.polkit import allowed_units, render_rule
from agent.install.unit import SYSUSERS, agent_unit
from demo.harness.processes import PROJECT, require_binary

RULE = PROJECT / "deploy/polkit/50-maintenance-agent.rules"


UNIT = PROJECT / "deploy/systemd/maintenance-agent.service"

#: What systemd still counts as exposure in the unit, and why the agent needs each.
#: A new entry here means a hardening directive was dropped: say why or put it back.
NEEDED_EXPOSURES = {
    "RestrictAddressFamilies=~AF_UNIX": "D-Bus for systemctl, HAProxy's admin socket, sd_notify",
    "RestrictAddressFamilies=~AF_(INET|INET6)": "Consul's HTTP API, smoke tests, supervisor XML-RPC, webhooks",
    "PrivateNetwork=": "the same network peers",
    "IPAddressDeny=": "Consul's and the partners' addresses come from the config, not the unit",
    "PrivateUsers=": "polkit decides systemctl calls by the real maintenance-agent user",
    "SystemCallFilter=~@privileged": "@system-service includes it; command backends run service scripts",
    "SystemCallFilter=~@resources": "@system-service includes it",
    "RemoveIPC=": "a dedicated static user owns no IPC objects worth removing",
    "RootDirectory=/RootImage=": "systemctl, hooks and command backends run the host's binaries",
    "PrivateMounts=": "implied by ProtectSystem=strict for the writes that matter",
    "ProtectProc=": "process lookup of hooks and commands it started",
    "ProcSubset=": "the same",
    "DeviceAllow=": "PrivateDevices=yes already leaves only pseudo devices",
    "UMask=": "0027: the state file is readable by the group (operators), not others",
}


def _unit_settings() -> dict[str, str]:
    settings: dict[str, str] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings[key] = value
    return settings


def test_systemd_rates_the_unit_and_every_remaining_exposure_is_needed() -> None:
    analyze = require_binary("systemd-analyze")
    report = subprocess.run([analyze, "security", "--offline=true", "--json=short", str(UNIT)],
                            capture_output=True, text=True, timeout=60, check=True)
    exposed = {item["name"] for item in json.loads(report.stdout) if item["exposure"]}
    assert exposed <= set(NEEDED_EXPOSURES), f"hardening lost: {sorted(exposed - set(NEEDED_EXPOSURES))}"
    rated = subprocess.run([analyze, "security", "--offline=true", "--threshold=20", str(UNIT)], capture_output=True, text=True, timeout=60)
    assert rated.returncode == 0, "overall exposure above 2.0: " + rated.stdout.strip().splitlines()[-1]


def test_unit_user_state_and_watchdog_agree_with_the_agent() -> None:
    unit = _unit_settings()
    sysusers = [line for line in (PROJECT / "deploy/systemd/maintenance-agent.sysusers.conf").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    kind, user, _, _, home, shell = shlex.split(sysusers[0])
    assert (kind, shell) == ("u", "/usr/sbin/nologin") and len(sysusers) == 1
    assert unit["User"] == user != "root" and f'subject.user != "{user}"' in RULE.read_text()
    # The state file lives where systemd gives the user a writable directory under ProtectSystem=strict.
    assert Path("/var/lib") / unit["StateDirectory"] == AgentSection(node="n", environment="e", roles=[Role.WEB]).state_dir == Path(home)
    # systemd kills a loop silent for WatchdogSec; one step may block that long before its own timeout fires.
    longest_step = max(HooksSection().timeout_seconds, WorkerSection.model_fields["timeout_seconds"].default,
                       SchedulerSection.model_fields["timeout_seconds"].default)
    assert float(unit["WatchdogSec"]) > longest_step
    assert unit["Type"] == "notify"
    for command in (unit["ExecStartPre"], unit["ExecStart"]):
        subcommand, *args = shlex.split(command)[1:]
        assert subcommand in agent_cli.commands and args[0] == "--config"


def _decide(user: str, action: str, unit: str | None = "", verb: str | None = "", later_rules: str = "") -> str:
    """Run the rule in node with a stand-in polkit object (same API as polkitd's duktape/mozjs): one JavaScript
    context for every rules file, as polkitd has; ``later_rules`` is another file's script loaded after ours."""
    details = json.dumps({k: v for k, v in {"unit": unit, "verb": verb}.items() if v is not None})
    script = "\n".join([
        'var polkit = {Result: {YES: "yes", NO: "no", NOT_HANDLED: "not handled"}, rules: [],',
        '              addRule: function(f) { this.rules.push(f); }};',
        RULE.read_text(), later_rules,
        f"var details = {details};",
        f"var action = {{id: {json.dumps(action)}, lookup: function(k) {{ return details[k]; }}}};",
        f"console.log(polkit.rules[0](action, {{user: {json.dumps(user)}}}));"])
    node = require_binary("node")
    return subprocess.run([node, "-e", script], capture_output=True, text=True, timeout=30, check=True).stdout.strip()


def test_polkit_rule_allows_exactly_the_configured_units_and_verbs() -> None:
    manage = "org.freedesktop.systemd1.manage-units"
    assert _decide("maintenance-agent", manage, "billpay-worker@3.service", "stop") == "yes"
    assert _decide("maintenance-agent", manage, "billpay-ledger-sync.service", "start") == "yes"
    assert _decide("maintenance-agent", manage, "billpay-worker@3.service", "restart") == "no"
    assert _decide("maintenance-agent", manage, "billpay-worker@3.timer", "stop") == "no"
    assert _decide("maintenance-agent", manage, "sshd.service", "stop") == "no"
    assert _decide("maintenance-agent", manage, "xbillpay-ledger-sync.service", "stop") == "no", "anchored"
    for refused in ("manage-unit-files", "reload-daemon", "set-environment"):
        assert _decide("maintenance-agent", f"org.freedesktop.systemd1.{refused}") == "no"
    assert _decide("maintenance-agent", "org.freedesktop.login1.reboot") == "not handled"
    assert _decide("someone-else", manage, "billpay-worker@3.service", "stop") == "not handled"


def test_polkit_rule_lets_no_instance_name_smuggle_a_path_and_no_other_file_widen_it() -> None:
    manage = "org.freedesktop.systemd1.manage-units"
    assert _decide("maintenance-agent", manage, "billpay-worker@eu-1.service", "start") == "yes"
    assert _decide("maintenance-agent", manage, "billpay-worker@host.example.service", "start") == "yes"
    for instance in ("-etc-shadow", "\\x2fetc", "..-..-etc", "a..b", "a-", ""):
        assert _decide("maintenance-agent", manage, f"billpay-worker@{instance}.service", "start") == "no", instance
    assert _decide("maintenance-agent", manage, None, "start") == "no", "a request without a unit is refused"
    assert _decide("maintenance-agent", manage, "billpay-worker@3.service", None) == "no", "a request without a verb too"
    widen = 'var ALLOWED = [{unit: /.*/, verbs: ["start", "stop"]}]; var allowed = ALLOWED;'
    assert _decide("maintenance-agent", manage, "debug-shell.service", "start", later_rules=widen) == "no"


def test_the_shipped_deploy_files_are_what_install_files_writes() -> None:
    """deploy/ shows the files for the documented install; install-files writes them from the box's config."""
    assert UNIT.read_text() == agent_unit()
    assert (PROJECT / "deploy/systemd/maintenance-agent.sysusers.conf").read_text() == SYSUSERS
    example = load(PROJECT / "deploy/examples/worker.toml")
    assert RULE.read_text() == render_rule(allowed_units(example), "/etc/maintenance-agent/config.toml")
