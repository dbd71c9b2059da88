"""Least privilege against a real Consul with ACLs on (default deny), using the shipped policies in deploy/consul/.

The agent's policy lets it do all of its work (read the intent, write its own
status under its session, node maintenance of its own node, register its
service); it cannot write the intent or another box's status (403, reported
clearly, no retry storm, the token never in logs or status). The operator
policy can flip; the read-only one cannot.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from agent.clients.consul import ConsulGateway
from agent.core.errors import ConsulPermissionDenied
from bench.figures import record
from demo.harness.agents import AgentProcess, agent_doc, metric, start_agent
from demo.harness.processes import wait_until
from tests.fixtures.consul_acl import AclConsul, render
from tests.fixtures.faulty_proxy import FaultyProxy


@pytest.fixture
def acl_consul(tmp_path: Path):
    server = AclConsul(tmp_path / "consul").start()
    try:
        yield server
    finally:
        server.stop()


def _status(consul: AclConsul, environment: str, box: str) -> dict | None:
    return consul.kv_get_json(f"maintenance/{environment}/status/{box}")


@pytest.mark.slow
def test_shipped_policies_grant_exactly_the_work(acl_consul: AclConsul, environment: str, tmp_path: Path) -> None:
    consul = acl_consul
    consul.create_policy("agent-web-a", render("agent", prefix="maintenance", env=environment, box="web-a", consul_node=consul.node))
    consul.create_policy("operator", render("operator", prefix="maintenance", env=environment))
    consul.create_policy("readonly", render("readonly", prefix="maintenance"))
    agent_token, operator_token, readonly_token = (consul.create_token(p) for p in ("agent-web-a", "operator", "readonly"))
    token_file = tmp_path / "agent.token"
    token_file.write_text(agent_token + "\n")
    token_file.chmod(0o600)
    desired = f"maintenance/{environment}/desired"

    doc = agent_doc(consul.address, environment, "web-a", ["web"], tmp_path / "state")
    doc["consul"]["token_file"] = str(token_file)
    agent = start_agent(doc)
    operator = ConsulGateway(consul.address, token=operator_token)
    readonly = ConsulGateway(consul.address, token=readonly_token)
    as_agent = ConsulGateway(consul.address, token=agent_token)
    try:
        wait_until(lambda: (s := _status(consul, environment, "web-a")) and s["state"] == "active", 20, what="agent reports")
        # The operator flips; the agent does all of its work with its own token.
        assert operator.put_key(desired, "maintenance")
        index = consul.kv_index(desired)
        wait_until(lambda: (s := _status(consul, environment, "web-a")) and s["state"] == "maintenance" and s["intent_index"] == index,
                   20, what="maintenance under ACLs")
        checks = requests.get(f"{consul.address}/v1/agent/checks", headers=consul.admin, timeout=5).json()
        assert "_node_maintenance" in checks
        assert operator.put_key(f"maintenance/{environment}/history/x", "{}")
        assert readonly.get_key(f"maintenance/{environment}/status/web-a").exists
        members = readonly.members(environment)[1]
        assert [m.box for m in members] == ["web-a"]
        # A gate's read of several boxes (one read-only transaction) is allowed to the agent, a missing box included.
        statuses = as_agent.read_keys([f"maintenance/{environment}/status/web-a", f"maintenance/{environment}/status/web-gone"])
        assert statuses[f"maintenance/{environment}/status/web-a"].exists and not statuses[f"maintenance/{environment}/status/web-gone"].exists
        with pytest.raises(ConsulPermissionDenied) as denied:  # Consul leaves keys the token may not read out of the answer
            as_agent.read_keys([desired, f"maintenance/{environment}/history/x"])  # the agent may read the intent, not the history
        assert "history/x" in denied.value.rule

        # What the agent must not do: 403, with the rule that is missing, never the token.
        for key in (desired, f"maintenance/{environment}/status/web-b"):
            with pytest.raises(ConsulPermissionDenied) as denied:
                as_agent.put_key(key, "active")
            assert "403" in str(denied.value) and agent_token not in str(denied.value)
            assert key in denied.value.rule
        with pytest.raises(ConsulPermissionDenied):
            as_agent.put_key(f"maintenance/{environment}/history/y", "{}")
        # The read-only token sees and cannot flip.
        with pytest.raises(ConsulPermissionDenied):
            readonly.put_key(desired, "active")

        assert operator.put_key(desired, "active")
        index = consul.kv_index(desired)
        wait_until(lambda: (s := _status(consul, environment, "web-a")) and s["state"] == "active" and s["intent_index"] == index,
                   20, what="back to active under ACLs")
        status_text = str(_status(consul, environment, "web-a"))
        assert agent_token not in status_text
        record("ACL default deny: shipped policies", faults=4, actions_lost=0,
               detail="agent works; agent cannot write intent/other status/history; read-only cannot flip")
    finally:
        agent.stop()


@pytest.mark.slow
def test_a_denied_agent_reports_clearly_without_a_retry_storm_or_leaking_its_token(acl_consul: AclConsul, environment: str,
                                                                                 tmp_path: Path) -> None:
    consul = acl_consul
    # A policy rendered for another box: this agent may not write its own status key.
    consul.create_policy("agent-wrong", render("agent", prefix="maintenance", env=environment, box="web-x", consul_node=consul.node))
    token = consul.create_token("agent-wrong")
    (tmp_path / "token").write_text(token)
    proxy = FaultyProxy(consul.address).start()
    doc = agent_doc(proxy.address, environment, "web-b", ["web"], tmp_path / "state")
    doc["consul"]["token_file"] = str(tmp_path / "token")
    proc = AgentProcess(doc, tmp_path / "agent").start()
    try:
        wait_until(lambda: "403" in proc.log(), 20, what="the refusal in the log")
        start = time.monotonic()
        time.sleep(8)
        writes = [r for r in proxy.requests_between(start, time.monotonic()) if r.method == "PUT" and "/status/web-b" in r.path]
        # A refusal is retried at the slow rate (once a TTL, 10 s here), not like an outage: at most two in 8 s.
        assert len(writes) <= 2, f"{len(writes)} refused status writes in 8 s: a retry storm"
        log = proc.log()
        assert f"write of maintenance/{environment}/status/web-b" in log and "Permission denied" in log
        assert token not in log, "the token leaked into the log"
        assert token not in proxy.log[0].path
        assert _status(consul, environment, "web-b") is None
        record("ACL: agent denied its status key", faults=1, actions_lost=0, detail=f"{len(writes)} refused writes in 8 s; token not logged")
    finally:
        proc.stop()
        proxy.stop()


def test_a_token_that_may_not_read_the_intent_is_a_refusal_not_an_outage(acl_consul: AclConsul, environment: str, tmp_path: Path) -> None:
    consul = acl_consul
    rules = render("agent", prefix="maintenance", env=environment, box="web-r", consul_node=consul.node)
    without_intent = rules.replace(f'key "maintenance/{environment}/desired" {{\n  policy = "read"\n}}', "")
    assert without_intent != rules
    consul.create_policy("agent-no-intent", without_intent)
    consul.create_policy("agent-full", rules)
    token = consul.create_token("agent-no-intent")
    doc = agent_doc(consul.address, environment, "web-r", ["web"], tmp_path / "state")
    doc["consul"]["token"] = token
    agent = start_agent(doc)
    try:
        status = wait_until(lambda: (s := _status(consul, environment, "web-r")) and s.get("intent_error") and s, 20,
                            what="the refusal in the status")
        assert status["intent_error"].startswith("intent read refused: ")
        assert f'key_prefix "maintenance/{environment}/desired"' in status["intent_error"], "the missing rule is named"
        text = metric(agent, "maintenance_consul")
        assert "maintenance_consul_up 1.0" in text and "maintenance_consul_refused 1.0" in text, text
        # Granting the rule clears the refusal without a restart.
        requests.put(f"{consul.address}/v1/acl/token/{_accessor(consul, token)}",
                     json={"SecretID": token, "Policies": [{"Name": "agent-full"}]}, headers=consul.admin, timeout=5).raise_for_status()
        wait_until(lambda: (s := _status(consul, environment, "web-r")) and s.get("intent_error") is None, 45, what="the refusal to clear")
        assert "maintenance_consul_refused 0.0" in metric(agent, "maintenance_consul_refused")
    finally:
        agent.stop()


def _accessor(consul: AclConsul, secret: str) -> str:
    tokens = requests.get(f"{consul.address}/v1/acl/tokens", headers=consul.admin, timeout=5).json()
    for listed in tokens:
        full = requests.get(f"{consul.address}/v1/acl/token/{listed['AccessorID']}", headers=consul.admin, timeout=5).json()
        if full.get("SecretID") == secret:
            return listed["AccessorID"]
    raise AssertionError("token not found")
