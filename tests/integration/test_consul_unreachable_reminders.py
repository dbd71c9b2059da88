"""An agent whose Consul is away says why at once, then reminds at growing intervals, and says when it is back."""

from __future__ import annotations

from agent.clients.consul import ConsulGateway
from agent.core.errors import ConsulUnavailable
from agent.core.settings import BackoffPolicy
from agent.daemon.watches.watcher import ConsulReachability, KeyWatcher, WatchEvent
from demo.harness.consul import ConsulAgentProcess
from demo.harness.processes import wait_until


def test_the_cause_once_then_reminders_at_growing_intervals_then_reachable(own_consul: ConsulAgentProcess) -> None:
    events: list[WatchEvent] = []
    own_consul.stop()
    watcher = KeyWatcher(ConsulGateway(own_consul.address, request_timeout=1.0), "maintenance/x/desired", events.append, wait=1.0,
                         reconnect=BackoffPolicy(base=0.05, cap=0.1), remind_after=(0.5, 1.0)).start()
    try:
        wait_until(lambda: sum(isinstance(e, ConsulReachability) and e.reminder for e in events) >= 3, 15.0, what="three reminders")
        down = [e for e in events if isinstance(e, ConsulReachability)]
        assert not down[0].up and not down[0].reminder and "connection refused" in down[0].error
        reminders = [e for e in down if e.reminder]
        assert all("connection refused" in e.error for e in reminders)
        # due after 0.5 s, 1.0 s, then every 0.5 s more: growing, never one per retry
        assert [round(e.down_seconds * 2) / 2 >= due for e, due in zip(reminders, (0.5, 1.0, 1.5), strict=False)] == [True] * 3
        retries = watcher.requests
        assert retries > 2 * len(reminders), "many retries, few reminders"
        own_consul.start()
        wait_until(lambda: any(isinstance(e, ConsulReachability) and e.up for e in events), 30.0, what="reachable again")
    finally:
        watcher.stop()
        watcher.join(5)


def test_a_name_that_does_not_resolve_is_said_as_such() -> None:
    gateway = ConsulGateway("http://no-such-host.invalid:8500", request_timeout=2.0)
    try:
        gateway.get_key("k")
    except ConsulUnavailable as exc:
        assert "host name not found (DNS)" in str(exc) or "DNS lookup failed" in str(exc), exc
    else:
        raise AssertionError("a host that does not exist answered")
