"""The crash sweep: SIGKILL the agent at every point between two backend calls; nothing is lost.

For each backend — real supervisord, the command backend, the systemd
stand-in — and for each role that stops what ran and must bring back exactly
that (worker services, scheduler jobs), a box runs ``alpha`` and ``beta`` and
has ``gamma`` stopped. The agent process (``tests.fixtures.crash_agent``) blocks before its
Nth call to the service manager and is SIGKILLed there, for every N:

- **entering**: killed at call N while entering; a restarted agent finishes
  entering (everything stopped);
- **leaving**: from maintenance, killed at call N while leaving; a restarted
  agent finishes leaving;
- **cancelling**: killed part-way into a window, the window is cancelled,
  killed again at call N of the cancel; a restarted agent finishes.

After every window: exactly ``alpha`` and ``beta`` run (and, with systemd,
exactly what was enabled is enabled: the agent never touches unit files),
``gamma`` was never started nor stopped, no hold marker is left, and the
journal of completed calls shows no service stopped, started, held or
released twice. The test prints how many kill points it tried.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agent.core.model import State
from agent.daemon.app import SHUTDOWN_DEADLINE_SECONDS, STOP_GRACE_SECONDS, Agent, gateway_for
from agent.daemon.local.statefile import read_state
from agent.daemon.steps.by_role import build_steps
from bench.figures import record
from demo.harness.agents import agent_doc, config_of, status_of, to_toml
from demo.harness.consul import ConsulAgentProcess
from demo.harness.processes import wait_until
from demo.harness.supervisor import Supervisord, SupervisordLauncher
from tests.fixtures.crash_agent import AgentZygote, wrap_backends
from tests.fixtures.crash_boxes import RAN_BEFORE, Box, CommandBox, SupervisorBox, SystemdBox

_flows = itertools.count(1)


@dataclass
class Sweep:
    consul: ConsulAgentProcess
    box: Box
    workdir: Path
    kind: str
    spawner: AgentZygote
    role: str = "worker"
    tried: Counter = field(default_factory=Counter)

    # -- one flow: a fresh environment, state dir and journal ----------------------------------

    def flow(self) -> tuple[dict, Path]:
        n = next(_flows)
        env = f"crash{os.getpid() % 1000}x{n}"
        doc = agent_doc(self.consul.address, env, f"{self.kind}-{self.role}", [self.role], self.workdir / f"state-{n}",
                        **{self.role: self.box.table(self.role)})
        doc["agent"]["retry_max_seconds"] = 0.5
        self.box.reset(Path(doc["agent"]["state_dir"]) / "holds")
        return doc, self.workdir / f"journal-{n}"

    def put(self, doc: dict, value: str) -> int:
        return self.consul.kv_put(f"maintenance/{doc['agent']['environment']}/desired", value)

    def crash_at(self, doc: dict, journal: Path, kill_at: int, settled: State, index: int, label: str | None) -> bool:
        """Run the agent until it blocks before call ``kill_at``, then SIGKILL it. False when it settled first."""
        config = self.workdir / f"{doc['agent']['environment']}-{kill_at}.toml"
        config.write_text(to_toml(doc))
        marker = config.with_suffix(".reached")
        marker.unlink(missing_ok=True)
        proc = self.spawner.launch(config=config, journal=journal, kill_at=kill_at, marker=marker)
        try:
            def reached_or_settled() -> str | None:
                if marker.exists() and marker.read_text():
                    return "reached"
                status = status_of(self.consul.address, doc["agent"]["environment"], doc["agent"]["node"])
                if status and status["state"] == settled.value and status["intent_index"] == index:
                    return "settled"
                if not proc.alive():
                    raise AssertionError(f"crash agent exited: {proc.output()[-2000:]}")
                return None
            outcome = wait_until(reached_or_settled, 30, interval=0.02, what=f"call {kill_at} or {settled.value}")
            if outcome == "reached" and json.loads(marker.read_text())["state"] == settled.value:
                outcome = "settled"  # a settled box's own re-checks are not part of the transition
            if outcome == "reached" and label:
                self.tried[label] += 1
            return outcome == "reached"
        finally:
            proc.kill()

    def restart_until(self, doc: dict, journal: Path, settled: State, index: int) -> None:
        """A restarted agent (in-process, journaling) converges to ``settled`` for ``index``."""
        config = config_of(doc)
        gateway = gateway_for(config)
        steps = build_steps(config, gateway)
        wrap_backends(steps, journal)
        agent = Agent(config, gateway=gateway, steps=steps).start()
        try:
            wait_until(lambda: agent.reconciler.state is settled and agent.reconciler.record.progress.intent_index == index
                       and agent.reconciler.error is None, 30, what=f"restarted agent to be {settled.value} for {index}")
        finally:
            agent.stop()

    # -- what must hold ------------------------------------------------------------------------

    def assert_entered(self) -> None:
        assert self.box.running() == set(), f"{self.kind} {self.role}: still running in maintenance: {self.box.running()}"

    def assert_back(self, journal: Path, where: str, holds_dir: Path) -> None:
        running = self.box.running()
        assert running == RAN_BEFORE, f"{self.kind} {self.role} {where}: running {sorted(running)}, ran before {sorted(RAN_BEFORE)}"
        if isinstance(self.box, SystemdBox):
            assert self.box.enabled() == {"alpha"}, f"{self.kind} {self.role} {where}: enabled {self.box.enabled()}"
        done = Counter(_normalise(line) for line in (journal.read_text().splitlines() if journal.exists() else []))
        twice = {action: n for action, n in done.items() if n > 1}
        assert not twice, f"{self.kind} {self.role} {where}: actions ran twice: {twice}"
        assert not [a for a in done if a in ("start gamma", "stop gamma")], f"{self.kind} {self.role} {where}: gamma was touched: {done}"
        left = sorted(str(p.relative_to(holds_dir)) for p in holds_dir.rglob("*") if p.is_file()) if holds_dir.exists() else []
        assert not left, f"{self.kind} {self.role} {where}: hold markers left after the window: {left}"
        for name in ("alpha", "beta", "gamma"):
            assert done[f"hold {name}"] == done[f"release {name}"], f"{self.kind} {self.role} {where}: {name} held/released {done}"
        for name in RAN_BEFORE:
            assert done[f"start {name}"] <= done[f"stop {name}"], f"{self.kind} {self.role} {where}: {name} started without being stopped"


def holds_of(doc: dict) -> Path:
    return Path(doc["agent"]["state_dir"]) / "holds"


def _normalise(line: str) -> str:
    """``start alpha:alpha`` / ``start alpha.service`` → ``start alpha``."""
    verb, _, name = line.partition(" ")
    return f"{verb} {name.split(':')[0].removesuffix('.service')}"


def enter_and_leave(sweep: Sweep, kill_at: int, entering: bool = True, leaving: bool = True) -> tuple[bool, bool]:
    """Kill at call N while entering, restart; then kill at call N while leaving, restart.

    Whether each phase still had a call N (a phase already known to be shorter is not crashed again).
    """
    doc, journal = sweep.flow()
    index = sweep.put(doc, "maintenance")
    entering = entering and sweep.crash_at(doc, journal, kill_at, State.MAINTENANCE, index, "entering")
    sweep.restart_until(doc, journal, State.MAINTENANCE, index)
    sweep.assert_entered()
    index = sweep.put(doc, "active")
    leaving = leaving and sweep.crash_at(doc, journal, kill_at, State.ACTIVE, index, "leaving")
    sweep.restart_until(doc, journal, State.ACTIVE, index)
    sweep.assert_back(journal, f"killed at call {kill_at} entering and leaving", holds_of(doc))
    return entering, leaving


def cancel(sweep: Sweep, partial: int, kill_at: int) -> bool:
    """Killed at call ``partial`` entering; the window is cancelled; killed at call N of the cancel; restart."""
    doc, journal = sweep.flow()
    index = sweep.put(doc, "maintenance")
    assert sweep.crash_at(doc, journal, partial, State.MAINTENANCE, index, None), "the partial entry must be cut short"
    index = sweep.put(doc, "active")
    cancelling = sweep.crash_at(doc, journal, kill_at, State.ACTIVE, index, "cancelling")
    sweep.restart_until(doc, journal, State.ACTIVE, index)
    sweep.assert_back(journal, f"killed at call {partial} entering, then at call {kill_at} cancelling", holds_of(doc))
    return cancelling


def run_sweep(sweep: Sweep) -> None:
    entering_calls = 0
    entering = leaving = True
    for kill_at in itertools.count(1):
        entering, leaving = enter_and_leave(sweep, kill_at, entering, leaving)
        if entering:
            entering_calls = kill_at
        if not entering and not leaving:
            break
    # Cancel from a box a third and two thirds of the way in.
    for partial in sorted({max(1, entering_calls // 3), max(1, 2 * entering_calls // 3)}):
        for kill_at in itertools.count(1):
            if not cancel(sweep, partial, kill_at):
                break


@pytest.fixture
def crash_supervisord() -> Iterator[Supervisord]:
    programs = {"alpha": {"command": "sleep 1000"}, "beta": {"command": "sleep 1000"},
                "gamma": {"command": "sleep 1000", "autostart": "false"}}
    launcher = SupervisordLauncher(programs, {}, {"alpha:alpha", "beta:beta"})
    try:
        yield launcher.start()
    finally:
        launcher.stop()


@pytest.mark.slow
def test_sigkill_at_every_point_between_two_backend_calls_loses_nothing(consul_server: ConsulAgentProcess, crash_supervisord: Supervisord,
                                                                        tmp_path: Path) -> None:
    started = time.monotonic()
    boxes: dict[str, Box] = {
        "supervisor": SupervisorBox(crash_supervisord),
        "command": CommandBox(tmp_path / "command-box"),
        "systemd": SystemdBox(tmp_path / "systemd-box"),
    }
    totals: Counter = Counter()
    spawner = AgentZygote(tmp_path)
    try:
        for role, (kind, box) in itertools.product(("worker", "scheduler"), boxes.items()):
            where = tmp_path / f"{role}-{kind}"
            where.mkdir()
            sweep = Sweep(consul_server, box, where, kind, spawner, role=role)
            began = time.monotonic()
            run_sweep(sweep)
            print(f"crash sweep {role} {kind}: {dict(sweep.tried)} in {time.monotonic() - began:.0f}s")
            totals.update({f"{role} {phase}": n for phase, n in sweep.tried.items()})
    finally:
        spawner.close()
    total = sum(totals.values())
    print(f"crash sweep: {total} kill points tried ({dict(totals)}) in {time.monotonic() - started:.0f}s; nothing lost")
    assert total >= 20
    record("agent SIGKILLed between every two backend calls (worker and scheduler; supervisor, command, systemd)", faults=total,
           actions_lost=0,
           detail=", ".join(f"{n} {phase}" for phase, n in totals.items()))


@pytest.mark.slow
def test_sigterm_while_a_backend_call_hangs_exits_in_time_and_the_restart_converges(consul_server: ConsulAgentProcess, tmp_path: Path) -> None:
    """SIGTERM at a sample of the kill points, with the call there hanging: out within the grace, session released, state valid."""
    spawner = AgentZygote(tmp_path)
    sweep = Sweep(consul_server, CommandBox(tmp_path / "box"), tmp_path / "command", "command", spawner)
    (tmp_path / "command").mkdir()
    try:
        for kill_at in (2, 9, 14):
            doc, journal = sweep.flow()
            env, node = doc["agent"]["environment"], doc["agent"]["node"]
            index = sweep.put(doc, "maintenance")
            config = sweep.workdir / f"{env}.toml"
            config.write_text(to_toml(doc))
            marker = config.with_suffix(".reached")
            agent = spawner.launch(config=config, journal=journal, kill_at=kill_at, marker=marker)
            try:
                wait_until(marker.exists, 30, interval=0.02, what=f"call {kill_at}")
                sent = time.monotonic()
                os.kill(agent.pid, signal.SIGTERM)
                wait_until(lambda a=agent: not a.alive(), SHUTDOWN_DEADLINE_SECONDS, interval=0.05, what="the agent to exit after SIGTERM")
                took = time.monotonic() - sent
            finally:
                agent.kill()
            assert took < STOP_GRACE_SECONDS + 3, f"SIGTERM at call {kill_at}: exited after {took:.1f}s"
            assert status_of(consul_server.address, env, node) is None, "the session was released"
            assert read_state(Path(doc["agent"]["state_dir"]) / "state.json")[1] is None
            assert "Traceback" not in agent.output()
            sweep.restart_until(doc, journal, State.MAINTENANCE, index)
            sweep.assert_entered()
            index = sweep.put(doc, "active")
            sweep.restart_until(doc, journal, State.ACTIVE, index)
            sweep.assert_back(journal, f"SIGTERM at call {kill_at} entering", holds_of(doc))
            print(f"SIGTERM at call {kill_at} (hanging): exited after {took:.1f}s")
    finally:
        spawner.close()
