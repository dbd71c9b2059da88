"""The loop-level watchdog contract: ``on_tick`` is called while the reconcile loop is alive, and only then.

systemd restarts the agent when WATCHDOG=1 stops arriving; the agent pings
from ``Reconciler.on_tick``. So: a loop that keeps retrying a failing step
(with retry delays longer than the watchdog interval) must keep pinging, and
a loop that is stuck inside a step (a deadlock no timeout catches) must stop.
Also: the first retry after Consul goes away is spread, so a fleet does not
reconnect in lockstep.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from pathlib import Path

import structlog

from agent.core.backoff import Backoff
from agent.core.errors import StepError
from agent.core.model import Member, Mode, Role
from agent.core.settings import DEFAULTS, BackoffPolicy
from agent.daemon.decision.reconcile import Reconciler
from agent.daemon.local.metrics import AgentMetrics
from agent.daemon.local.statefile import StateFile
from agent.daemon.reporting.reporter import StatusReporter
from agent.daemon.steps.base import Step, StepContext
from demo.harness.processes import wait_until
from tests.fakes import FakeGateway, FakePeers, read


class FailingStep(Step):
    name = "always-fails"

    def check(self, ctx: StepContext, target: Mode) -> bool:
        return target is Mode.ACTIVE

    def apply(self, ctx: StepContext) -> None:
        raise StepError(self.name, "timed out after 1s (hung systemctl)")

    def revert(self, ctx: StepContext) -> None:
        pass


class DeadlockedStep(FailingStep):
    name = "deadlocked"

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def apply(self, ctx: StepContext) -> None:
        self.entered.set()
        self.release.wait()  # a lock never released: no timeout catches it


class Pings:
    def __init__(self) -> None:
        self.times: list[float] = []

    def __call__(self) -> None:
        self.times.append(time.monotonic())

    def max_gap(self, since: float, until: float) -> float:
        stamps = [since] + [t for t in self.times if since <= t <= until] + [until]
        return max(b - a for a, b in itertools.pairwise(stamps))


def _reconciler(tmp_path: Path, step: Step, pings: Pings, retry_max: float, resync: float) -> Reconciler:
    return Reconciler(node="box-w", roles=[Role.WEB], order=list(Role), steps={Role.WEB: [step]},
                      memory=StateFile(tmp_path / "state.json"), peers=FakePeers(members_list=[Member("box-w", ("web",), "box-w", True)]),
                      publish=lambda s: None,
                      metrics=AgentMetrics(), log=structlog.get_logger(), retry=BackoffPolicy(base=1.0, cap=retry_max), resync=resync,
                      on_tick=pings)


def test_a_loop_retrying_a_failing_step_keeps_pinging(tmp_path: Path) -> None:
    pings = Pings()
    # Retry delays of 0.5-1 s from the first failure on: up to ten times the 0.1 s "watchdog interval" (resync).
    rec = _reconciler(tmp_path, FailingStep(), pings, retry_max=1.0, resync=0.1)
    rec.on_watch_event(read(b"maintenance", 3))
    rec.start()
    try:
        started = time.monotonic()
        time.sleep(1.5)
        assert rec.error and "timed out" in rec.error
        assert rec.retries.backoff.failures >= 2, "the loop did retry with delays longer than the watchdog interval"
        assert pings.max_gap(started + 0.1, time.monotonic()) < 0.1 + 0.3, "the watchdog would fire on a live loop"
    finally:
        rec.stop()


def test_a_deadlocked_loop_stops_pinging(tmp_path: Path) -> None:
    pings = Pings()
    step = DeadlockedStep()
    rec = _reconciler(tmp_path, step, pings, retry_max=0.2, resync=0.2)
    rec.on_watch_event(read(b"maintenance", 3))
    rec.start()
    try:
        assert step.entered.wait(5)
        stuck_at = time.monotonic()
        time.sleep(0.8)  # four watchdog intervals
        assert [t for t in pings.times if t > stuck_at] == [], "a stuck loop must not ping: systemd would never restart it"
    finally:
        step.release.set()
        rec.stop()


def test_first_retry_after_an_outage_is_spread_across_the_fleet() -> None:
    firsts = [DEFAULTS.consul_reconnect.start(rng=random.Random(seed)).next() for seed in range(300)]
    assert min(firsts) < 0.5 and max(firsts) > 2.0
    in_any_half_second = max(sum(1 for f in firsts if lo <= f < lo + 0.5) for lo in (x / 10 for x in range(0, 25)))
    assert in_any_half_second < 0.35 * len(firsts), "most of the fleet would reconnect in the same half second"
    without = [Backoff(base=0.5, cap=30.0, rng=random.Random(seed)).next() for seed in range(300)]
    assert max(without) <= 0.5  # the old behaviour: everyone within [0.25, 0.5]
    second = DEFAULTS.consul_reconnect.start()
    second.next()
    assert 0.5 <= second.next() <= 1.0  # the spread is only added once per run of failures


class LongHeartbeatingStep(FailingStep):
    """A long but live step (a quiesce of many services, a smoke test's retries): it heartbeats between its calls."""

    name = "long-but-alive"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.finished = threading.Event()

    def apply(self, ctx: StepContext) -> None:
        until = time.monotonic() + self.seconds
        while time.monotonic() < until:
            ctx.heartbeat()
            time.sleep(0.05)
        self.finished.set()


def test_liveness_and_the_watchdog_agree_during_a_long_step_and_a_deadlock(tmp_path: Path) -> None:
    """``/healthz`` (what the Consul check binding the session reads) judges the loop by ``last_tick``; the watchdog by the
    pings. A long step that heartbeats is alive for both (else Consul ends the session and the status key vanishes mid-step
    while systemd sees a live agent); a deadlocked one is dead for both."""
    pings = Pings()
    step = LongHeartbeatingStep(1.2)
    rec = _reconciler(tmp_path, step, pings, retry_max=0.2, resync=0.1)
    rec.on_watch_event(read(b"maintenance", 3))
    rec.start()
    ages = []
    try:
        while not step.finished.wait(0.05):
            ages.append(time.monotonic() - rec.loop.last_tick)
        assert max(ages) < 0.5, f"a heartbeating step looked silent to /healthz for {max(ages):.2f}s"
    finally:
        rec.stop()

    stuck = DeadlockedStep()
    (tmp_path / "b").mkdir()
    rec = _reconciler(tmp_path / "b", stuck, Pings(), retry_max=0.2, resync=0.1)
    rec.on_watch_event(read(b"maintenance", 3))
    rec.start()
    try:
        assert stuck.entered.wait(5)
        time.sleep(0.6)
        assert time.monotonic() - rec.loop.last_tick > 0.5, "a deadlocked loop must look silent to /healthz"
    finally:
        stuck.release.set()
        rec.stop()


def test_the_reporters_own_key_watch_counts_for_liveness(tmp_path: Path) -> None:
    """With a check-bound session the watch on its own status key is how the agent learns the key is gone: if that
    thread died, the key would stay gone while /healthz said 200, and nothing would restart the agent."""
    reporter = StatusReporter(FakeGateway(), "maintenance/prod/status/web-1", service_id="maintenance-agent:prod:web-1", tags=[], meta={},
                              memory=StateFile(tmp_path / "state.json"), log=structlog.get_logger(), health_url="http://127.0.0.1:9/healthz")
    reporter.start()
    try:
        assert reporter.alive()
        reporter.own_key.stop()
        wait_until(lambda: not reporter.own_key.alive(), 10, what="the own-key watch to end")
        assert not reporter.alive(), "the own-key watch is dead: the reporter must not count as alive"
    finally:
        reporter.stop(release=False)
