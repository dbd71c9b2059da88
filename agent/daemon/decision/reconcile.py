"""Reconciler: the one thread that decides. Snapshot → decide → act → report.

Each tick it takes the newest intent (``IntentInbox``), asks the pure
``decide`` what to do next and carries it out: fire the machine, pass a
role's gate (``GateKeeper``) and run its steps (``StepRunner``), adopt a new
intent of the same mode, repair drift; then asks again until the answer is
to wait. Everything is level-triggered: a tick re-derives where the box is
from its state file and the steps' own checks, so a restart, a crash or a
change of mind midway all converge the same way. A failing step is retried
with capped, jittered backoff and reported; it is never skipped past.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, assert_never

from agent.core.decide import Adopt, Converge, Decision, Finish, Fire, Hold, Progress, Repair, decide
from agent.core.errors import MaintenanceAgentError
from agent.core.gates import roles_in_direction
from agent.core.machine import BoxMachine
from agent.core.model import Intent, Mode, Role, State, Status
from agent.core.settings import DEFAULTS, BackoffPolicy
from agent.daemon.decision.gatekeeper import GateKeeper, Peers
from agent.daemon.decision.health import LoopHealth, MemoryHold, Retries
from agent.daemon.decision.inbox import Intake, IntentInbox
from agent.daemon.decision.loop import DecisionLoop
from agent.daemon.decision.record import BoxRecord
from agent.daemon.decision.stepper import StepRunner
from agent.daemon.local.metrics import AgentMetrics
from agent.daemon.local.statefile import StateFile
from agent.daemon.steps.base import Step
from agent.daemon.watches.watcher import WatchEvent


def utc_now() -> datetime:
    return datetime.now(UTC)


def call_hook(log: Any, name: str, hook: Callable[..., None], *args: Any) -> None:
    """Run an optional hook (scheduler, notices); its failure is logged, never the loop's."""
    try:
        hook(*args)
    except Exception as exc:  # a hook must not stop the decisions (logged with its traceback)
        log.exception("hook failed", hook=name, error=str(exc))


class Reconciler:
    def __init__(self, node: str, roles: Sequence[Role], order: Sequence[Role], steps: Mapping[Role, Sequence[Step]],
                 memory: StateFile, peers: Peers, publish: Callable[[Status], None], metrics: AgentMetrics, log: Any,
                 retry: BackoffPolicy = DEFAULTS.step_retry, resync: float = 30.0, on_tick: Callable[[], None] | None = None,
                 clock: Callable[[], datetime] = utc_now, on_intent: Callable[[Intent], None] | None = None,
                 on_transition: Callable[[State, State, Intent | None], None] | None = None):
        self.node = node
        self.roles = [r for r in order if r in roles]
        self.steps = {r: list(steps.get(r, ())) for r in self.roles}
        self.publish = publish
        self.metrics = metrics
        self.log = log.bind(node=node)
        self.resync = resync
        self._publishes = 0  # statuses handed to the reporter (a tick publishes its intake only if nothing else did)
        self.on_tick = on_tick or (lambda: None)
        self.clock = clock
        self.on_intent = on_intent or (lambda intent: None)
        self.on_transition = on_transition or (lambda source, dest, intent: None)
        self.inbox = IntentInbox(metrics, self.log)
        self.record = BoxRecord(node, self.roles, memory, clock)
        self.retries = Retries(retry, self.record, metrics, self.log)
        self.gates = GateKeeper(node, order, peers, self.record, self._publish, metrics, self.log, resync)
        self.health = LoopHealth(self.record, metrics, self.log)
        self.memory_hold = MemoryHold(memory, self.record, metrics, self.log)
        self.loop = DecisionLoop(f"reconcile:{node}", lambda: self.tick(), self.on_tick, self._loop_failed, self._loop_succeeded,
                                 self.retries.backoff, resync, self.log)
        self.runner = StepRunner(node, memory, self.log, heartbeat=self.loop.between_calls)

        self.machine = BoxMachine(self.record.initial, on_change=self._on_state_change)
        self._transition_started: float | None = None
        self.metrics.state.state(self.record.initial.value)
        self.memory_hold.holding()

    # -- inputs (any thread) ---------------------------------------------------

    def on_watch_event(self, event: WatchEvent) -> None:
        self.inbox.offer(event)
        self.wake()

    def wake(self) -> None:
        self.loop.wake()

    @property
    def intent(self) -> Intent | None:
        return self.inbox.intent

    @property
    def error(self) -> str | None:
        return self.record.error

    @property
    def state(self) -> State:
        return self.machine.current

    # -- the loop ----------------------------------------------------------------

    def start(self) -> None:
        self._publish()
        self.loop.start()

    def stop(self, grace: float = 30.0) -> bool:
        """Start no new action; wait up to ``grace`` for the call in flight (False: abandoned)."""
        return self.loop.stop(grace)

    def _loop_failed(self, exc: Exception) -> None:
        self.health.failed(exc)
        self._publish()

    def _loop_succeeded(self) -> None:
        if self.health.recovered():
            self._publish()

    def tick(self) -> float:
        """Decide and act until the answer is to wait; returns how long the loop may sleep.

        What the intake changed (a new intent, a refused one) is published only if the tick's moves did not: a flip
        publishes ``entering`` at once, and writing the old state under the new intent first would cost one more
        write per box at the flip, fleet-wide."""
        absorbed, published = self._absorb_intent(), self._publishes
        try:
            return self._decide_and_act()
        finally:
            if absorbed and self._publishes == published:
                self._publish()

    def _decide_and_act(self) -> float:
        self.record.save_pending(self.state)
        was_held = self.record.held is not None
        if self.memory_hold.holding():
            self._publish()
            return self.resync
        if was_held:  # an operator reset the state file: start from what it says now
            self.machine = BoxMachine(self.record.initial, on_change=self._on_state_change)
            self._publish()
        intent = self.intent
        if intent is None:
            return self.resync  # nothing read yet: hold whatever we were doing
        now = self.clock()
        # Each move that does not wait makes progress (a trigger, a settled role), so a
        # tick takes at most one trigger, one move per role and the finish.
        for _ in range(len(self.roles) + 3):
            decision = decide(intent, self.state, self.record.progress.intent_index, self.record.progress.roles, self.roles, now,
                              self.retries.due_in(), self.resync)
            wait = self._carry_out(decision, intent)
            if wait is not None:
                return wait
        raise RuntimeError(f"no decision settled the tick (last: {decision})")

    def _carry_out(self, decision: Decision, intent: Intent) -> float | None:
        """Do what ``decision`` says; None to decide again at once, else how long to wait."""
        match decision:
            case Hold(wait=wait):
                return wait
            case Fire():
                self._start_transition(decision.trigger, intent)
                return None
            case Adopt(target=target, wait=wait):
                return self._adopt(intent, target, wait)
            case Repair(target=target, wait=wait):
                return self._repair_drift(intent, target, wait)
            case Converge(target=target, role=role):
                self._follow(intent)
                return self._converge_role(role, intent, target)
            case Finish():
                self._follow(intent)
                self.gates.done()
                self.record.clear()
                self.machine.fire(decision.trigger)
                return 0.0
            case _:
                assert_never(decision)

    def _follow(self, intent: Intent) -> None:
        """A transition acts for ``intent``: its roles' progress is kept for that intent (saved when it starts anew)."""
        if self.record.follow_intent(intent.index, self.state):
            self.record.save(self.state)

    # -- intent ----------------------------------------------------------------

    def _absorb_intent(self) -> bool:  # True: something new to show
        intake = self.inbox.take(self.state)
        if intake is Intake.ACCEPTED and self.intent is not None:
            self.retries.reset()
            call_hook(self.log, "on_intent", self.on_intent, self.intent)
        return intake is not None

    # -- transitions -------------------------------------------------------------

    def _start_transition(self, trigger: str, intent: Intent) -> None:
        self.log.info("transition", trigger=trigger, from_state=self.state.value, intent_index=intent.index)
        self._transition_started = time.monotonic()
        self.record.clear()
        self.metrics.count_drift([], [])  # drift is about a settled box: a transition re-checks every step anyway
        self.record.show_drift([], self.log)
        self.retries.reset()
        self.machine.fire(trigger)

    def _on_state_change(self, source: State, dest: State) -> None:
        self.record.since = self.clock()
        self.metrics.state.state(dest.value)
        if dest in (State.ACTIVE, State.MAINTENANCE) and self._transition_started is not None:
            self.metrics.transition_done(dest is State.MAINTENANCE, time.monotonic() - self._transition_started)
            self._transition_started = None
        if dest in (State.ENTERING, State.EXITING) and self.intent:
            self.record.follow_intent(self.intent.index, dest)  # saved and published with the state: one write at a flip
        self.record.save(self.state)
        self.log.info("state changed", from_state=source.value, to_state=dest.value,
                      intent_index=self.intent.index if self.intent else None)
        self._publish()
        call_hook(self.log, "on_transition", self.on_transition, source, dest, self.intent)

    def _converge_role(self, role: Role, intent: Intent, target: Mode) -> float | None:
        """Pass ``role``'s gate and make its steps hold; None once the role is settled."""
        if self.record.progress.roles.get(role.value) != self.state.value:
            self.record.progress.roles[role.value] = self.state.value
        gate = self.gates.pass_(role, intent, target)
        if gate.error:
            return self._failed(role, "gate", gate.error, gate.failure)
        if not gate.open:
            return gate.wait
        wait = self._run_steps(role, intent, target)
        if wait is not None:
            return wait
        settled = State.settled_for(target).value
        self.record.progress.roles[role.value] = settled
        self.record.save(self.state)
        self.log.info("role settled", role=role.value, state=settled, intent_index=intent.index)
        self._publish()
        return None

    def _run_steps(self, role: Role, intent: Intent, target: Mode, settled: bool = False) -> float | None:
        steps = self.steps[role] if target is Mode.MAINTENANCE else list(reversed(self.steps[role]))
        run = self.runner.converge(steps, self.runner.context(intent, role), target, settled=settled)
        if run.pending is not None:
            self.metrics.step_blocked.set(1)
            if self.record.show_blocked(run.pending.blocked_on):
                self.log.info("step pending", role=role.value, intent_index=intent.index, step=run.step, blocked_on=run.pending.blocked_on)
                self._publish()
            return run.pending.recheck_after
        if run.error is not None:
            return self._failed(role, run.step, run.error, run.failure)
        self.metrics.step_blocked.set(0)
        if self.record.error or self.record.blocked_on:
            self.record.clear()
            self.retries.backoff.reset()
            self._publish()
        return None

    def _failed(self, role: Role, step: str, message: str, failure: MaintenanceAgentError | None = None) -> float:
        delay = self.retries.failed(role, step, message, failure)
        self._publish()
        return delay

    # -- settled -------------------------------------------------------------------

    def _adopt(self, intent: Intent, target: Mode, wait: float) -> float:
        """Same mode, new intent (new message, end time): re-check the steps (the edge's page text); no gates."""
        for role in roles_in_direction(self.roles, target):
            step_wait = self._run_steps(role, intent, target, settled=True)
            if step_wait is not None:
                return step_wait
        self.record.progress = Progress(intent.index, {r.value: State.settled_for(target).value for r in self.roles})
        self.record.save(self.state)
        self._publish()
        return wait

    def _repair_drift(self, intent: Intent, target: Mode, wait: float) -> float:
        found = self.runner.repair_drift(self.steps, intent, target)
        self.metrics.count_drift(*found.labels())
        reported_changed = self.record.show_drift(found.describe_reported(), self.log)
        if found.failed is not None:
            role, run = found.failed
            return self._failed(role, run.step, f"drift repair: {run.error}", run.failure)
        if self.record.error or reported_changed:
            self.record.error = None
            self._publish()
        return wait

    # -- report ----------------------------------------------------------------------

    def status(self) -> Status:
        return self.record.status(self.state, self.intent, self.inbox.error, self.clock())

    def _publish(self) -> None:
        self._publishes += 1
        self.publish(self.status())
