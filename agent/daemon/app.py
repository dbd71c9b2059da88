"""Agent: one box's agent as an object, wired from its config. Start-up and shutdown order.

No globals: several agents can run in one process (tests, the demo, the fleet
benchmark), each with its own registry, state file and threads.
"""

from __future__ import annotations

import socket
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import structlog

from agent import __version__
from agent.clients.alertmanager import AlertmanagerClient
from agent.clients.blocking import WatchFailures
from agent.clients.consul import ConsulGateway
from agent.core.decide import settled_target
from agent.core.model import Intent, Mode, Role, State
from agent.core.settings import DEFAULTS, Settings
from agent.daemon.decision.reconcile import Reconciler
from agent.daemon.gates.peers import PeerView
from agent.daemon.local.metrics import AgentMetrics, MetricsServer
from agent.daemon.local.sdnotify import SystemdNotifier
from agent.daemon.local.statefile import StateFile
from agent.daemon.reporting.reporter import StatusReporter
from agent.daemon.steps.by_role import build_steps
from agent.daemon.watches.driftwatch import DriftWatch
from agent.daemon.watches.watcher import KeyWatcher
from agent.daemon.watches.windows import EntryScheduler
from agent.partners.silences import SilenceLease, fleet_is_back, matchers_for

if TYPE_CHECKING:
    from agent.config.schema import AgentConfig
    from agent.daemon.steps.base import Step
    from agent.partners.dispatch import NoticeDispatcher
    from agent.partners.team import TeamWatch

STOP_GRACE_SECONDS = 8.0
"""How long a stop waits for the backend call in flight before abandoning it (docs/reliability.md)."""

SHUTDOWN_DEADLINE_SECONDS = 25.0
"""The process exits by then whatever happens: below the unit's ``TimeoutStopSec=30``, so systemd
never kills an agent before it released its session."""


def gateway_for(config: AgentConfig) -> ConsulGateway:
    """The gateway of this box: the [consul] table, else the CONSUL_* environment (as the consul command reads it)."""
    return ConsulGateway.connect(config.consul.connection(), request_timeout=config.consul.request_timeout_seconds)


def settings_for(config: AgentConfig) -> Settings:
    """The retry and rate settings: the defaults, with what the config file sets (the cap of step retries)."""
    return replace(DEFAULTS, step_retry=replace(DEFAULTS.step_retry, cap=config.agent.retry_max_seconds))


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        gateway: ConsulGateway | None = None,
        steps: dict[Role, list[Step]] | None = None,
        log: Any = None,
        notifier: SystemdNotifier | None = None,
        settings: Settings | None = None,
    ):
        self.config = config
        self.settings = settings or settings_for(config)
        self.node = config.agent.node
        self.gateway = gateway or gateway_for(config)
        self.log = (log or structlog.get_logger()).bind(node=self.node, env=config.agent.environment)
        self.notifier = notifier or SystemdNotifier()
        self.metrics = AgentMetrics()
        self.metrics.count_requests_of(self.gateway)
        self.memory = StateFile(config.agent.state_dir / "state.json")
        prefix = config.env_prefix
        self.desired_key = f"{prefix}/desired"
        self.status_key = f"{prefix}/status/{self.node}"
        roles = [r.value for r in config.agent.roles]
        self.metrics.info.info({"version": __version__, "node": self.node, "roles": ",".join(roles), "environment": config.agent.environment})

        # Bound now (port 0 picks one), so the local Consul agent's check can be pointed at /healthz.
        self.metrics_server = MetricsServer(self.metrics, config.metrics.listen, self.healthy, self.ready)
        self.reporter = self._status_reporter(config)
        self.windows = EntryScheduler(wake=self._wake, log=self.log, start_gauge=self.metrics.window_start)
        self.tells_window, self.notices, self.team = self._tellers(config, prefix)
        self.peers = PeerView(self.gateway, config.agent.environment, f"{prefix}/status", wake=self._wake, wait=config.consul.wait_seconds,
                              settings=self.settings, node=self.node, failures=self._watch_failures, refresh=config.agent.resync_seconds)
        self.silence = self._silence_lease(config, prefix)
        self.reconciler = self._reconciler(config, steps if steps is not None else build_steps(config, self.gateway))
        self.metrics.follow_window(lambda: (self.reconciler.intent, self.reconciler.state))
        # Local drift (HAProxy map, service manager, flag file) is seen within drift_check_seconds,
        # whatever resync_seconds is; the reconciler alone repairs it.
        self.drift = DriftWatch(self.node, self.reconciler.steps, self._settled_view, self._wake, self.memory, self.log,
                                config.agent.drift_check_seconds)
        self.watcher = KeyWatcher(self.gateway, self.desired_key, self.reconciler.on_watch_event,
                                  wait=config.consul.wait_seconds, consistent=True, name=f"watch:{self.node}",
                                  reconnect=self.settings.consul_reconnect, reads=self.settings.intent_reads,
                                  # Counted only: the reconciler logs the intent watch's outage as Consul's reachability.
                                  failures=self._watch_failures("intent", logged=False))

    def _status_reporter(self, config: AgentConfig) -> StatusReporter:
        roles = [r.value for r in config.agent.roles]
        return StatusReporter(
            self.gateway, self.status_key,
            service_id=f"maintenance-agent:{config.agent.environment}:{self.node}",
            tags=[f"env:{config.agent.environment}", *(f"role:{r}" for r in roles)],
            meta={"box": self.node, "env": config.agent.environment, "version": __version__,
                  "order": ",".join(r.value for r in config.agent.order)},  # maintctl shows the fleet in the agents' order
            memory=self.memory, ttl=config.consul.session_ttl_seconds, log=self.log, settings=self.settings,
            identity=f"{socket.gethostname()}:{self.memory.path.resolve()}",
            on_conflict=lambda message: self.metrics.status_conflict.set(1 if message else 0),
            health_url=self.metrics_server.health_url,
            wait=config.consul.wait_seconds,
            own_key_failures=self._watch_failures("own-status"),
        )

    def _reconciler(self, config: AgentConfig, steps: dict[Role, list[Step]]) -> Reconciler:
        resync = config.agent.resync_seconds
        if self.notifier.watchdog_interval:
            resync = min(resync, self.notifier.watchdog_interval)  # the loop pings the watchdog at least this often
        return Reconciler(
            node=self.node,
            roles=config.agent.roles,
            order=config.agent.order,
            steps=steps,
            memory=self.memory,
            peers=self.peers,
            publish=self.reporter.publish,
            metrics=self.metrics,
            log=self.log,
            retry=self.settings.step_retry,
            resync=resync,
            on_tick=self.notifier.watchdog,
            on_intent=self.windows.arm,
            on_transition=self._on_transition,
        )

    def _watch_failures(self, watch: str, logged: bool = True) -> WatchFailures:
        """How ``watch``'s failed queries are told: counted in ``maintenance_watch_errors_total{watch}``, logged once a run."""
        return WatchFailures(watch, self.log if logged else None, self.metrics.watch_errors.labels(watch).inc)

    def _tellers(self, config: AgentConfig, prefix: str) -> tuple[bool, NoticeDispatcher | None, TeamWatch | None]:
        """Edge boxes see the actual start and end first: they tell partners and the team's chat (claimed once per
        recipient and channel in Consul). Any box with [notices.chat] tells the chat when it is stuck or the window overruns."""
        chat = config.notices.chat
        tells_window = Role.EDGE in config.agent.roles and bool(config.notices.partners or chat)
        if not (tells_window or chat):
            return False, None, None
        from agent.partners.dispatch import NoticeDispatcher  # only a box that tells loads the senders' HTTP library
        from agent.partners.team import TeamWatch

        notices = NoticeDispatcher(self.gateway, prefix, config.agent.environment, self.node, config.notices, self.log)
        team = (TeamWatch(notices, config.agent.environment, self.node, chat.blocked_after_seconds,
                          box=lambda: (self.reconciler.status(), self.reconciler.intent)) if chat else None)
        return tells_window, notices, team

    def _silence_lease(self, config: AgentConfig, prefix: str) -> SilenceLease | None:
        """Edge boxes (first in, last out) hold the Alertmanager silence lease of a window."""
        am = config.alertmanager
        if am is None or Role.EDGE not in config.agent.roles:
            return None
        return SilenceLease(
            self.gateway, f"{prefix}/silence", AlertmanagerClient(am.url, am.timeout_seconds),
            matchers_for(am.matchers, config.agent.environment), am.lease_seconds, am.renew_seconds, self.node, am.created_by,
            box=lambda: (self.reconciler.state, self.reconciler.intent),
            fleet_back=lambda intent: fleet_is_back(self.peers, intent, self.reconciler.status()), log=self.log)

    def _on_transition(self, source: State, dest: State, intent: Intent | None) -> None:
        """The reconciler's transition hook: the silence first (before the window's first step), then the notices."""
        if self.silence:
            self.silence.on_transition(source, dest, intent)
        if self.notices and self.tells_window:
            self.notices.on_transition(source, dest, intent)

    def _wake(self) -> None:
        self.reconciler.wake()

    def _settled_view(self) -> tuple[Intent | None, Mode | None]:
        rec = self.reconciler
        intent = rec.intent
        return intent, settled_target(intent, rec.state, rec.record.progress.intent_index, rec.clock())

    def healthy(self) -> tuple[bool, str]:
        age = time.monotonic() - self.reconciler.loop.last_tick
        limit = 2 * self.reconciler.resync + 10
        if age > limit:
            return False, f"reconcile loop silent for {age:.0f}s"
        for name, alive in (("intent watcher", self.watcher.alive), ("status reporter", self.reporter.alive), ("drift watch", self.drift.alive)):
            if not alive():
                return False, f"{name} thread is not running"
        # The state the status reports: ``unknown`` while an unusable state file holds the box (alive all the same,
        # so Consul keeps the session and that status; ``/readyz`` says it cannot make progress).
        shown = State.UNKNOWN.value if self.reconciler.record.held else self.reconciler.state.value
        if self.reporter.conflict:
            # Still healthy (the loop runs), but say why the status key is not ours.
            return True, f"ok state={shown}; status key conflict: {self.reporter.conflict}"
        return True, f"ok state={shown}"

    def ready(self) -> tuple[bool, str]:
        """``/readyz``: alive *and* able to make progress. Alive but stuck (an unwritable state_dir, a bug,
        an unusable state file) is not something a restart fixes: an operator must look, so it is not ``/healthz``."""
        alive, detail = self.healthy()
        if not alive:
            return alive, detail
        if self.reconciler.health.error:
            return False, f"cannot make progress: {self.reconciler.health.error}"
        if self.reconciler.record.held:
            return False, f"cannot make progress: {self.reconciler.record.held}"
        if self.reporter.conflict:  # its status cannot be reported, so no gate can see this box: not ready
            return False, f"cannot report: status key conflict: {self.reporter.conflict}"
        return True, detail

    def start(self) -> Agent:
        self.metrics_server.start()
        self.reporter.start()
        self.windows.start()
        if self.silence and self.config.alertmanager:
            self.windows.every("alert-silence", self.config.alertmanager.renew_seconds, self.silence.tick)
        if self.notices:
            self.notices.resume()
        if self.team and self.config.notices.chat:
            self.windows.every("team-chat", min(15.0, max(0.5, self.config.notices.chat.blocked_after_seconds / 4)), self.team.tick)
        self.reconciler.start()
        self.drift.start()
        self.watcher.start()
        self.log.info("agent started", roles=[r.value for r in self.config.agent.roles], desired_key=self.desired_key,
                      state=self.reconciler.state.value)
        self.notifier.ready(f"state={self.reconciler.state.value}")
        return self

    def stop(self) -> None:
        """Start no new action, finish or abandon the one in flight (``STOP_GRACE_SECONDS``), release the session.

        The state file needs no final save: every change was saved as it happened.
        """
        self.notifier.stopping()
        self.watcher.stop()
        self.drift.stop()
        self.reconciler.stop(grace=STOP_GRACE_SECONDS)
        self.windows.stop()
        if self.notices:
            self.notices.stop()
        self.peers.stop()
        self.reporter.stop(release=True)
        self.metrics_server.stop()
        self.log.info("agent stopped", state=self.reconciler.state.value)
