"""Reconciler: the one thread that decides. Snapshot → decide → step → report.

Each tick it takes the newest intent, compares it with the box's state and
moves the machine; while entering or exiting it walks the box's roles in the
direction's order, waits at each role's gate, and runs that role's steps
(``check`` → ``apply``/``revert`` → ``check``). Everything it does is
level-triggered: a tick re-derives where the box is from its state file and
the steps' own checks, so a restart, a crash or a change of mind midway all
converge the same way. A failing step is retried with capped, jittered
backoff and reported; it is never skipped past.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agent import __version__
from agent.core.backoff import Backoff
from agent.core.errors import IntentError, MaintenanceAgentError, StepError, StepPending
from agent.core.gates import evaluate_gate, roles_before, roles_in_direction
from agent.core.intent import parse_intent
from agent.core.machine import BoxMachine, trigger_towards
from agent.core.model import Intent, Member, Mode, Role, State, Status
from agent.daemon.metrics import AgentMetrics
from agent.daemon.statefile import StateFile
from agent.daemon.steps.base import Step, StepContext
from agent.daemon.watcher import ConsulReachability, KeyChanged, WatchEvent


def utc_now() -> datetime:
    return datetime.now(UTC)


def effective_mode(intent: Intent, state: State, now: datetime) -> Mode:
    """What the box should move towards right now, given the intent and the clock.

    A future ``starts_at`` keeps a box that is active, or on its way back to
    active, where it is (the entry is scheduled; a box already entering or in
    maintenance is not pulled out); ``auto_end`` with a passed ``ends_at`` asks
    for active.
    """
    if intent.mode is Mode.MAINTENANCE:
        if intent.auto_end and intent.ends_at is not None and now >= intent.ends_at:
            return Mode.ACTIVE
        if intent.starts_at is not None and now < intent.starts_at and state in (State.ACTIVE, State.EXITING):
            return Mode.ACTIVE
    return intent.mode


class Peers:
    """What the reconciler needs from the rest of the fleet (``agent.daemon.peers.PeerView``)."""

    def members(self) -> list[Member]: ...  # pragma: no cover - protocol
    def snapshot(self, boxes: Sequence[str]) -> Mapping[str, Status | None]: ...  # pragma: no cover
    def watch(self, boxes: Sequence[str]) -> None: ...  # pragma: no cover
    def unwatch(self) -> None: ...  # pragma: no cover
    def read_budget(self) -> float: ...  # pragma: no cover


@dataclass
class Progress:
    """Where this box is for one intent: the state of each of its roles."""

    intent_index: int
    roles: dict[str, str]


class Reconciler:
    def __init__(
        self,
        node: str,
        roles: Sequence[Role],
        order: Sequence[Role],
        steps: Mapping[Role, Sequence[Step]],
        memory: StateFile,
        peers: Peers,
        publish: Callable[[Status], None],
        metrics: AgentMetrics,
        log: Any,
        retry_max: float = 30.0,
        resync: float = 30.0,
        on_tick: Callable[[], None] | None = None,
        clock: Callable[[], datetime] = utc_now,
        on_intent: Callable[[Intent], None] | None = None,
        on_transition: Callable[[State, State, Intent | None], None] | None = None,
    ):
        self.node = node
        self.order = list(order)
        self.roles = [r for r in self.order if r in roles]
        self.steps = {r: list(steps.get(r, ())) for r in self.roles}
        self.memory = memory
        self.peers = peers
        self.publish = publish
        self.metrics = metrics
        self.log = log.bind(node=node)
        self.resync = resync
        self.on_tick = on_tick or (lambda: None)
        self.clock = clock
        self.on_intent = on_intent or (lambda intent: None)
        self.on_transition = on_transition or (lambda source, dest, intent: None)
        self.backoff = Backoff(base=1.0, cap=retry_max)

        saved = memory.get("machine", {}) or {}
        initial = State(saved.get("state", State.ACTIVE.value))
        self.since = saved.get("since") or self.clock().isoformat()
        self.progress = Progress(int(saved.get("intent_index", 0)), dict(saved.get("progress", {})))
        self.machine = BoxMachine(initial, on_change=self._on_state_change)
        self.intent: Intent | None = None
        self.intent_error: str | None = None
        self.error: str | None = None
        self.blocked_on: str | None = None
        self._pending_read: KeyChanged | None = None
        self._retry_at = 0.0
        self._transition_started: float | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"reconcile:{node}", daemon=True)
        self.last_tick = time.monotonic()
        self.metrics.state.state(initial.value)

    # -- inputs (any thread) ---------------------------------------------------

    def on_watch_event(self, event: WatchEvent) -> None:
        with self._lock:
            if isinstance(event, KeyChanged):
                self._pending_read = event
            elif isinstance(event, ConsulReachability):
                self.metrics.consul_up.set(1 if event.up else 0)
                if not event.up:
                    self.log.warning("consul unreachable; holding the current state", error=event.error)
                else:
                    self.log.info("consul reachable")
        self.wake()

    def wake(self) -> None:
        self._wake.set()

    # -- the loop ----------------------------------------------------------------

    def start(self) -> None:
        self._publish()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)

    @property
    def state(self) -> State:
        return self.machine.current

    def _run(self) -> None:
        while not self._stop.is_set():
            self.last_tick = time.monotonic()
            self.on_tick()
            try:
                wait = self.tick()
            except Exception as exc:  # noqa: BLE001 - the loop must survive any bug in a step
                self.log.exception("reconcile tick failed", error=str(exc))
                self.error = f"internal error: {exc}"
                self._publish()
                wait = self.backoff.next()
            # Never sleep longer than ``resync`` (which the app caps at the
            # watchdog interval): a retry delay or a pending step's recheck may
            # be longer, and a sleeping loop that stops pinging the watchdog
            # would be restarted though it is alive. Waking early is harmless:
            # tick() is level-triggered.
            self._wake.wait(timeout=max(0.0, min(wait, self.resync)))
            self._wake.clear()

    def tick(self) -> float:
        """One decision; returns how long the loop may sleep before the next."""
        self._absorb_intent()
        intent = self.intent
        if intent is None:
            return self.resync  # nothing read yet: hold whatever we were doing
        now = self.clock()
        self._update_window_metrics(intent, now)
        target = effective_mode(intent, self.state, now)
        trigger = trigger_towards(self.state, target)
        if trigger:
            self._start_transition(trigger, intent)
        if self.state in (State.ENTERING, State.EXITING):
            if time.monotonic() < self._retry_at:
                return self._retry_at - time.monotonic()
            return self._converge(intent, target)
        return self._settled(intent, target, now)

    # -- intent ----------------------------------------------------------------

    def _absorb_intent(self) -> None:
        with self._lock:
            event, self._pending_read = self._pending_read, None
        if event is None:
            return
        read = event.read
        if not read.exists:
            if self.state is State.ACTIVE:
                # Missing at start-up, or deleted before a scheduled window
                # began: active (and a scheduled entry is cancelled).
                self._accept(Intent(mode=Mode.ACTIVE, index=0))
            else:
                self._refuse("intent missing: the desired key was deleted; holding (write 'active' to leave maintenance)")
            return
        if self.intent is not None and read.modify_index == self.intent.index:
            return
        try:
            intent = parse_intent(read.value or b"", read.modify_index)
        except IntentError as exc:
            self.metrics.intent_errors.inc()
            self._refuse(f"intent {read.modify_index} refused: {exc}")
            return
        self._accept(intent)

    def _accept(self, intent: Intent) -> None:
        if self.intent_error:
            self.metrics.intent_error_active.set(0)
        self.intent_error = None
        if self.intent != intent:
            self.log.info("intent accepted", intent_index=intent.index, mode=intent.mode.value, reason=intent.reason, by=intent.by)
        self.intent = intent
        self.metrics.desired.state(intent.mode.value)
        self.metrics.intent_index.set(intent.index)
        self._retry_at = 0.0
        self.backoff.reset()
        self._hook("on_intent", self.on_intent, intent)
        self._publish()

    def _hook(self, name: str, hook: Callable[..., None], *args: Any) -> None:
        """Run an optional hook (scheduler, notices); its failure is logged, never the loop's."""
        try:
            hook(*args)
        except Exception as exc:  # noqa: BLE001 - a hook must not stop the decisions
            self.log.exception("hook failed", hook=name, error=str(exc))

    def _refuse(self, message: str) -> None:
        if message != self.intent_error:
            self.log.error("intent refused; nothing changes", reason=message)
        self.intent_error = message
        self.metrics.intent_error_active.set(1)
        self._publish()

    # -- transitions -------------------------------------------------------------

    def _start_transition(self, trigger: str, intent: Intent) -> None:
        self.log.info("transition", trigger=trigger, from_state=self.state.value, intent_index=intent.index)
        self._transition_started = time.monotonic()
        self.error = None
        self.blocked_on = None
        self._retry_at = 0.0
        self.backoff.reset()
        self.machine.fire(trigger)

    def _on_state_change(self, source: State, dest: State) -> None:
        self.since = self.clock().isoformat()
        self.metrics.state.state(dest.value)
        if dest in (State.ACTIVE, State.MAINTENANCE) and self._transition_started is not None:
            direction = "enter" if dest is State.MAINTENANCE else "exit"
            self.metrics.transition_seconds.labels(direction).observe(time.monotonic() - self._transition_started)
            self._transition_started = None
        self._save()
        self.log.info("state changed", from_state=source.value, to_state=dest.value,
                      intent_index=self.intent.index if self.intent else None)
        self._publish()
        self._hook("on_transition", self.on_transition, source, dest, self.intent)

    def _converge(self, intent: Intent, target: Mode) -> float:
        settled = State.settled_for(target).value
        if self.progress.intent_index != intent.index:
            self.progress = Progress(intent.index, {r.value: self.state.value for r in self.roles})
            self._save()
        for role in roles_in_direction(self.roles, target):
            if self.progress.roles.get(role.value) == settled:
                continue
            if self.progress.roles.get(role.value) != self.state.value:
                self.progress.roles[role.value] = self.state.value
            wait = self._pass_gate(role, intent, target)
            if wait is not None:
                return wait
            wait = self._run_steps(role, intent, target)
            if wait is not None:
                return wait
            self.progress.roles[role.value] = settled
            self._save()
            self.log.info("role settled", role=role.value, state=settled, intent_index=intent.index)
            self._publish()
        self.peers.unwatch()
        self.blocked_on = None
        self.error = None
        self.machine.fire("entered" if target is Mode.MAINTENANCE else "exited")
        return 0.0

    def _pass_gate(self, role: Role, intent: Intent, target: Mode) -> float | None:
        """None when ``role`` may act towards ``target`` now, else how long to wait.

        ``target`` is the effective direction, which differs from the intent's
        mode when ``auto_end`` ends a window.
        """
        earlier = {r.value for r in roles_before(role, self.order, target)}
        if not earlier:
            return None  # the first role of the direction waits for nobody
        budget = self.peers.read_budget()
        if budget > 0:
            return budget  # reads spent (a flapping intent): come back, never sleep here
        try:
            members = self.peers.members()
            needed = [m.box for m in members if m.box != self.node and earlier & set(m.roles)]
            statuses = self.peers.snapshot(needed)
        except MaintenanceAgentError as exc:
            return self._failed(role, "gate", f"cannot read the fleet from Consul: {exc}")
        if not any(m.box == self.node for m in members):
            # An empty or partial catalog (a token that may not read nodes,
            # a lost registration) must not look like "nobody to wait for".
            return self._failed(role, "gate", "this box is not among the registered maintenance-agent services of "
                                "its environment: the membership read is incomplete (ACL node/service read?), refusing to pass")
        verdict = evaluate_gate(role, self.order, intent, members, statuses, self.node, target=target)
        if verdict.released:
            self.log.warning("gate passes without released boxes", role=role.value, released=list(verdict.released))
        if not verdict.open:
            blocked = verdict.describe(role)
            self.peers.watch(verdict.waiting_boxes)  # wake when one it waits for changes; re-evaluating then costs Consul nothing
            self.metrics.gate_blocked.set(1)
            if blocked != self.blocked_on:
                self.blocked_on = blocked
                self.log.info("waiting at gate", role=role.value, blocked_on=blocked, intent_index=intent.index)
                self._publish()
            return self.resync
        self.metrics.gate_blocked.set(0)
        if self.blocked_on:
            self.log.info("gate open", role=role.value, intent_index=intent.index)  # when the fleet let this role act
            self.blocked_on = None
            self._publish()
        return None

    def _run_steps(self, role: Role, intent: Intent, target: Mode) -> float | None:
        steps = self.steps[role] if target is Mode.MAINTENANCE else list(reversed(self.steps[role]))
        log = self.log.bind(role=role.value, intent_index=intent.index)
        ctx = StepContext(intent=intent, node=self.node, memory=self.memory, log=log, heartbeat=self.on_tick)
        for step in steps:
            self.on_tick()  # alive between steps too: a tick may run several steps, each bounded by its timeout
            try:
                if step.check(ctx, target):
                    continue
                log.info("step acting", step=step.name, action="apply" if target is Mode.MAINTENANCE else "revert")
                started = time.monotonic()
                (step.apply if target is Mode.MAINTENANCE else step.revert)(ctx)
                if not step.check(ctx, target):
                    raise StepError(step.name, "did not hold after acting (check() still false)")
                log.info("step done", step=step.name, seconds=round(time.monotonic() - started, 3))
            except StepPending as pending:
                self.metrics.step_blocked.set(1)
                if pending.blocked_on != self.blocked_on:
                    self.blocked_on = pending.blocked_on
                    log.info("step pending", step=step.name, blocked_on=pending.blocked_on)
                    self._publish()
                return pending.recheck_after
            except MaintenanceAgentError as exc:
                return self._failed(role, step.name, str(exc))
        self.metrics.step_blocked.set(0)
        if self.error or self.blocked_on:
            self.error = None
            self.blocked_on = None
            self.backoff.reset()
            self._publish()
        return None

    def _failed(self, role: Role, step: str, message: str) -> float:
        delay = self.backoff.next()
        self._retry_at = time.monotonic() + delay
        self.metrics.step_failures.labels(role.value, step).inc()
        self.log.error("step failed; will retry", role=role.value, step=step, error=message, retry_in=round(delay, 2))
        self.error = message if message.startswith(step) else f"{step}: {message}"
        self._publish()
        return delay

    # -- settled -------------------------------------------------------------------

    def _settled(self, intent: Intent, target: Mode, now: datetime) -> float:
        """Settled at the target: adopt a new intent index, repair drift now and then."""
        settled = State.settled_for(target).value
        if self.progress.intent_index != intent.index:
            # Same mode, new intent (new message or end time): re-check every
            # step so e.g. the edge's page shows the new text; no gates needed.
            for role in roles_in_direction(self.roles, target):
                wait = self._run_steps(role, intent, target)
                if wait is not None:
                    return wait
            self.progress = Progress(intent.index, {r.value: settled for r in self.roles})
            self._save()
            self._publish()
            return self._next_wake(intent, now)
        if time.monotonic() >= self._retry_at:
            for role in self.roles:
                for step in self.steps[role]:
                    if not step.repairs_drift:
                        continue
                    wait = self._repair(role, step, intent, target)
                    if wait is not None:
                        return wait
        return self._next_wake(intent, now)

    def _repair(self, role: Role, step: Step, intent: Intent, target: Mode) -> float | None:
        ctx = StepContext(intent=intent, node=self.node, memory=self.memory, log=self.log.bind(role=role.value, heartbeat=self.on_tick))
        try:
            if step.check(ctx, target):
                if self.error:
                    self.error = None
                    self._publish()
                return None
            self.log.warning("drift: step no longer holds; repairing", role=role.value, step=step.name)
            (step.apply if target is Mode.MAINTENANCE else step.revert)(ctx)
            if not step.check(ctx, target):
                raise StepError(step.name, "drift repair did not hold")
        except StepPending:
            return None
        except MaintenanceAgentError as exc:
            return self._failed(role, step.name, f"drift repair: {exc}")
        return None

    def _next_wake(self, intent: Intent, now: datetime) -> float:
        wait = self.resync
        for moment in (intent.starts_at, intent.ends_at):
            if moment is not None and moment > now:
                wait = min(wait, (moment - now).total_seconds() + 0.01)
        return wait

    def _update_window_metrics(self, intent: Intent, now: datetime) -> None:
        if intent.mode is Mode.MAINTENANCE and intent.ends_at is not None:
            left = (intent.ends_at - now).total_seconds()
            self.metrics.seconds_to_end.set(left)
            overrun = max(0.0, -left) if self.state is not State.ACTIVE else 0.0
            if overrun > 0 and self.metrics.window_overrun._value.get() == 0:  # noqa: SLF001 - log once per overrun
                self.log.warning("maintenance window overrun: past the announced end", ends_at=intent.ends_at.isoformat())
            self.metrics.window_overrun.set(overrun)
        else:
            self.metrics.seconds_to_end.set(0)
            self.metrics.window_overrun.set(0)

    # -- report ----------------------------------------------------------------------

    def _save(self) -> None:
        self.memory.put("machine", {
            "state": self.state.value,
            "since": self.since,
            "intent_index": self.progress.intent_index,
            "progress": self.progress.roles,
        })

    def status(self) -> Status:
        intent = self.intent
        scheduled = None
        if intent and intent.starts_at and self.state is State.ACTIVE and intent.mode is Mode.MAINTENANCE and self.clock() < intent.starts_at:
            scheduled = intent.starts_at.isoformat()
        progress = dict(self.progress.roles) if self.progress.roles else {r.value: self.state.value for r in self.roles}
        return Status(
            node=self.node,
            roles=tuple(r.value for r in self.roles),
            state=self.state.value,
            intent_index=self.progress.intent_index,
            since=self.since,
            error=self.error,
            blocked_on=("scheduled for " + scheduled) if scheduled and not self.blocked_on else self.blocked_on,
            version=__version__,
            progress=progress,
            desired=intent.mode.value if intent else None,
            scheduled_for=scheduled,
            intent_error=self.intent_error,
        )

    def _publish(self) -> None:
        self.publish(self.status())
