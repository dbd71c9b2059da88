"""Prometheus metrics of one agent, in its own registry (many agents may share a process).

Served with ``/healthz`` by ``MetricsServer`` on ``[metrics] listen``. Most
gauges are set by the reconciler when something happens; the window figures
(seconds until the announced end, overrun) change with the clock alone, so
they are computed from the current intent and state when scraped.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram, Info, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from agent.core.model import Intent, Mode, State


class AgentMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.state = Enum("maintenance_agent_state", "State of this box", states=[s.value for s in State], registry=r)
        self.desired = Enum("maintenance_desired_mode", "Mode the accepted intent asks for", states=[m.value for m in Mode], registry=r)
        self.intent_index = Gauge("maintenance_intent_index", "ModifyIndex of the intent this box acts on", registry=r)
        self.consul_up = Gauge("maintenance_consul_up", "1 while the watch on the intent reaches Consul", registry=r)
        self.gate_blocked = Gauge("maintenance_gate_blocked", "1 while a role waits at a gate for other boxes", registry=r)
        self.step_blocked = Gauge("maintenance_step_pending", "1 while a step is still finishing (e.g. draining jobs)", registry=r)
        self.step_failures = Counter("maintenance_step_failures", "Failed step attempts", ["role", "step"], registry=r)
        self.drift_repairs = Counter("maintenance_drift_repairs", "Drift repaired on a settled box (a step that no longer held "
                                     "was made to hold again)", ["role", "step"], registry=r)
        self.drift_reported = Gauge("maintenance_drift_reported", "1 while drift is found and left alone (the role has drift = report)",
                                    ["role", "step"], registry=r)
        self.intent_errors = Counter("maintenance_intent_errors", "Intent values refused as invalid", registry=r)
        self.intent_error_active = Gauge("maintenance_intent_error", "1 while the desired key holds a refused value", registry=r)
        self.transition_seconds = Histogram(
            "maintenance_transition_duration_seconds", "Time from starting to enter/exit until settled", ["direction"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800), registry=r)
        self.window_start = Gauge("maintenance_window_start_timestamp_seconds",
                                  "Scheduled start (UNIX time) of the accepted maintenance intent; 0 when none", registry=r)
        self.state_file_unusable = Gauge("maintenance_state_file_unreadable",
                                         "1 while the state file is unreadable or malformed: the box is held as it is", registry=r)
        self.loop_errors = Counter("maintenance_loop_errors", "Decision-loop ticks that failed outside any step (state file, a bug)", registry=r)
        self.consul_refused = Gauge("maintenance_consul_refused", "1 while Consul answers but refuses this agent's token (403)", registry=r)
        self.status_conflict = Gauge("maintenance_status_key_conflict",
                                     "1 while this box's status key is held by another agent (the same node name configured twice)",
                                     registry=r)
        self.watch_errors = Counter("maintenance_watch_errors", "Failed blocking queries of a watch (intent, own-status, membership, "
                                    "gate-follow), each retried with backoff", ["watch"], registry=r)
        self.info = Info("maintenance_agent", "Agent build and identity", registry=r)
        self._window = _WindowCollector(lambda: (None, State.ACTIVE), lambda: datetime.now(UTC))
        r.register(self._window)
        self.state.state(State.ACTIVE.value)
        self.desired.state(Mode.ACTIVE.value)
        self.consul_up.set(0)
        self._drift_shown: set[tuple[str, str]] = set()

    def transition_done(self, entered: bool, seconds: float) -> None:
        self.transition_seconds.labels("enter" if entered else "exit").observe(seconds)

    def count_drift(self, repaired: Iterable[tuple[str, str]], reported: Iterable[tuple[str, str]]) -> None:
        """One drift pass: count each repair; the reported gauge is 1 for exactly the (role, step)s in ``reported``."""
        for role, step in repaired:
            self.drift_repairs.labels(role, step).inc()
        now = set(reported)
        for role, step in self._drift_shown - now:
            self.drift_reported.labels(role, step).set(0)
        for role, step in now:
            self.drift_reported.labels(role, step).set(1)
        self._drift_shown = now

    def count_requests_of(self, source: CountsRequests) -> None:
        """Expose ``source.requests`` (the Consul gateway's request count) as a counter."""
        self.registry.register(_RequestCounter(source))

    def follow_window(self, box: Callable[[], tuple[Intent | None, State]],
                      clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        """Compute the window figures from ``box()`` (its current intent and state) at every scrape."""
        self._window.box = box
        self._window.clock = clock

    def render(self) -> bytes:
        return generate_latest(self.registry)


class CountsRequests(Protocol):
    """Anything that counts the requests it sent (the Consul gateway)."""

    requests: int


class _RequestCounter(Collector):
    def __init__(self, source: CountsRequests):
        self.source = source

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily("maintenance_consul_requests", "Requests this agent sent to Consul", value=self.source.requests)


def window_figures(intent: Intent | None, state: State, now: datetime) -> tuple[float, float]:
    """(seconds until the announced end, seconds of overrun) of a maintenance intent; (0, 0) without an end.

    Overrun counts from the announced end while the box is not back to active.
    """
    if intent is None or intent.mode is not Mode.MAINTENANCE or intent.ends_at is None:
        return 0.0, 0.0
    left = (intent.ends_at - now).total_seconds()
    return left, (max(0.0, -left) if state is not State.ACTIVE else 0.0)


class _WindowCollector:
    UNTIL_END = ("maintenance_window_seconds_until_end", "Seconds until the announced end (negative after it)")
    OVERRUN = ("maintenance_window_overrun_seconds", "Seconds past the announced end while still in maintenance")

    def __init__(self, box: Callable[[], tuple[Intent | None, State]], clock: Callable[[], datetime]):
        self.box = box
        self.clock = clock

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(*self.UNTIL_END)
        yield GaugeMetricFamily(*self.OVERRUN)

    def collect(self) -> Iterator[Metric]:
        intent, state = self.box()
        left, overrun = window_figures(intent, state, self.clock())
        yield GaugeMetricFamily(*self.UNTIL_END, value=left)
        yield GaugeMetricFamily(*self.OVERRUN, value=overrun)


class MetricsServer:
    """``/metrics``, ``/healthz`` (alive) and ``/readyz`` (alive and able to make progress) on a small threaded HTTP server."""

    def __init__(self, metrics: AgentMetrics, listen: str, healthy: Callable[[], tuple[bool, str]],
                 ready: Callable[[], tuple[bool, str]] | None = None):
        host, _, port = listen.rpartition(":")
        metrics_ref, checks = metrics, {"/healthz": healthy, "/readyz": ready or healthy}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] == "/metrics":
                    self._send(200, metrics_ref.render(), CONTENT_TYPE_LATEST)
                elif self.path.split("?")[0] in checks:
                    ok, detail = checks[self.path.split("?")[0]]()
                    self._send(200 if ok else 503, (detail + "\n").encode(), "text/plain; charset=utf-8")
                else:
                    self._send(404, b"not found\n", "text/plain")

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((host.strip("[]"), int(port)), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def health_url(self) -> str:
        """``/healthz`` as the box's own Consul agent reaches it (a wildcard listen address is reached on loopback)."""
        bound = self._server.server_address[0]
        host = bound.decode() if isinstance(bound, (bytes, bytearray)) else str(bound)
        host = "127.0.0.1" if host in ("", "0.0.0.0") else ("::1" if host == "::" else host)  # noqa: S104 - recognising, not binding
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.port}/healthz"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Shut the server down now: a connection of its own wakes its select loop instead of waiting out the
        half-second poll interval (which keeps an idle agent from waking more often)."""
        stopper = threading.Thread(target=self._server.shutdown, name="metrics-stop", daemon=True)
        stopper.start()
        host, port = urlsplit(self.health_url).hostname or "127.0.0.1", self.port
        while stopper.is_alive():
            with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
                pass
            stopper.join(0.05)
        self._server.server_close()
