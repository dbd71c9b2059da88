"""A worker box under the real systemd, D-Bus and polkit, installed as an operator installs it.

Plain services, template instances and a unit that was off before the window;
the agent's user may start and stop exactly those units and nothing else; a
power cut mid-window starts none of them; every unit's enabled state is the
same after the window as before.
"""

from __future__ import annotations

import pytest

from bench.figures import record
from demo.harness.agent_box import AgentBox, put_intent
from tests.fixtures.real_box import RAN_BEFORE, WORKERS, box_layer, box_wheels, worker_box  # noqa: F401


def test_a_window_holds_and_stops_the_workers_and_restores_exactly_what_ran(worker_box: AgentBox) -> None:
    enabled_before = worker_box.enabled(*WORKERS, "other.service")
    on = put_intent(worker_box.consul_address, worker_box.environment, "maintenance")
    worker_box.wait_status(state="maintenance", intent_index=on)
    assert worker_box.active(*WORKERS) == dict.fromkeys(WORKERS, "inactive")
    assert worker_box.held() == set(WORKERS), "every configured unit is held, also the one that was off"
    assert worker_box.enabled(*WORKERS, "other.service") == enabled_before, "unit files are never touched"
    status = worker_box.box.systemctl("status", "billing-worker.service", check=False).stdout
    worker_box.box.systemctl("start", "billing-worker.service")  # an operator trying by hand: the hold holds
    assert worker_box.active("billing-worker.service") == {"billing-worker.service": "inactive"}
    shown = worker_box.box.systemctl("status", "billing-worker.service", check=False).stdout
    assert "maintenance-agent-hold.conf" in status
    assert "ConditionPathExists=!/var/lib/maintenance-agent/holds/systemd/billing-worker.service was not met" in shown

    off = put_intent(worker_box.consul_address, worker_box.environment, "active")
    worker_box.wait_status(state="active", intent_index=off)
    assert {u for u, state in worker_box.active(*WORKERS).items() if state == "active"} == RAN_BEFORE
    assert worker_box.held() == set()
    assert worker_box.enabled(*WORKERS, "other.service") == enabled_before
    assert "reports.service" not in worker_box.starts(), "off before the window: stays off"


def test_the_agents_user_may_start_and_stop_exactly_its_units_and_nothing_else(worker_box: AgentBox) -> None:
    for allowed in ("stop billing-worker.service", "start billing-worker.service", "stop ledger@7.service"):
        code, said = worker_box.as_agent(*allowed.split())
        assert code == 0, f"{allowed}: {said}"
    for refused in ("start other.service", "stop polkit.service", "restart billing-worker.service", "enable billing-worker.service",
                    "disable billing-worker.service", "mask polkit.service", "enable other.service", "daemon-reload",
                    "set-environment X=1", "reboot"):
        code, said = worker_box.as_agent(*refused.split())
        assert code != 0, f"the agent's user could {refused}: {said}"
    assert worker_box.enabled("other.service", "billing-worker.service") == {"other.service": "enabled", "billing-worker.service": "enabled"}
    assert worker_box.box.systemctl("is-enabled", "polkit.service", check=False).stdout.strip() != "masked"


@pytest.mark.slow
def test_a_power_cut_mid_window_starts_no_held_unit_and_the_agent_reports_maintenance_again(worker_box: AgentBox) -> None:
    on = put_intent(worker_box.consul_address, worker_box.environment, "maintenance")
    worker_box.wait_status(state="maintenance", intent_index=on)
    starts = worker_box.power_cut_mid_window(on)
    after = worker_box.starts()[starts:]
    assert "other.service" in after, "the boot started the box's enabled units..."
    assert [u for u in after if u in WORKERS] == [], "...but no held one"
    assert worker_box.active(*WORKERS) == dict.fromkeys(WORKERS, "inactive")

    off = put_intent(worker_box.consul_address, worker_box.environment, "active")
    worker_box.wait_status(state="active", intent_index=off)
    assert {u for u, state in worker_box.active(*WORKERS).items() if state == "active"} == RAN_BEFORE
    record("power cut mid-window, real systemd worker box (services, template instances)", faults=1,
           detail=f"{len(WORKERS)} units held; 0 of them started after the boot, {len(after)} unheld units did")


@pytest.mark.slow
def test_a_refused_systemctl_call_names_the_polkit_action_and_the_unit(worker_box: AgentBox) -> None:
    worker_box.box.run("rm", "/etc/polkit-1/rules.d/50-maintenance-agent.rules")
    worker_box.box.systemctl("restart", "polkit")
    on = put_intent(worker_box.consul_address, worker_box.environment, "maintenance")
    failing = worker_box.wait_until_status(lambda s: s["intent_index"] == on and "polkit refused" in (s.get("error") or ""))
    assert failing["state"] == "entering"
    assert "org.freedesktop.systemd1.manage-units, verb stop, unit " in failing["error"], failing["error"]
    assert worker_box.active("billing-worker.service") == {"billing-worker.service": "active"}, "refused: nothing stopped"
