"""SessionKeeper: this box's service registration, and the Consul session that holds its status key.

Two ways to keep the session alive:

- **bound to a check the local Consul agent runs** (``health_url`` given, the
  default for a daemon): the service's check is an HTTP check on the agent's
  own ``/healthz``, and the session has no TTL but that check (and the node's
  ``serfHealth``). The agent sends nothing to keep it: a dead or hung agent
  fails the check within one interval, Consul invalidates the session and
  the status key disappears. The session is only looked at again when the
  reporter suspects it is gone (its status key changed or vanished).
- **TTL** (no ``health_url``, e.g. an agent object without a metrics server):
  the session is renewed and the service's TTL check passed once per
  ``ttl/3``.

Either way a lost session is logged and recreated (re-registering the service
first: the local Consul agent may have restarted), and a session this agent
left behind in an earlier life (killed) is ended, never another agent's.
"""

from __future__ import annotations

import time
from typing import Any

from agent.clients.consul import ConsulGateway, http_check, ttl_check
from agent.core.errors import MaintenanceAgentError
from agent.daemon.local.statefile import StateFile


class SessionKeeper:
    def __init__(self, gateway: ConsulGateway, service_id: str, tags: list[str], meta: dict[str, str], memory: StateFile,
                 name: str, ttl: int = 15, health_url: str | None = None, log: Any = None):
        self.gateway = gateway
        self.service_id = service_id
        self.tags = tags
        self.meta = meta
        self.memory = memory
        self.name = name
        self.ttl = ttl
        self.health_url = health_url
        self.log = log
        self.session: str | None = None
        self._registered = False
        self._checked_at = 0.0  # when the session was last renewed (TTL) or verified (check-bound)
        self._suspect = False

    @property
    def interval(self) -> float:
        """TTL mode: how often to renew. Check mode: how often Consul runs the check (a dead agent is seen within it).

        A quarter of the TTL in check mode: after the local Consul agent restarts, the servers hold the check as
        critical until its first run, and no session can be bound to it before; checking a local ``/healthz`` that
        often costs the servers nothing (only a change of the check's state is synced to them)."""
        return max(1.0, self.ttl / 3) if self.health_url is None else max(1.0, self.ttl / 4)

    @property
    def check_id(self) -> str:
        return f"{self.service_id}:{'alive' if self.health_url else 'ttl'}"

    def due_in(self) -> float | None:
        """Seconds until ``ensure()`` has work again by itself; None: only when told (``suspect``)."""
        if self.health_url is not None:
            return None
        return max(0.0, self._checked_at + self.interval * 0.9 - time.monotonic())

    def suspect(self) -> None:
        """The status key changed under us or vanished: verify (or recreate) the session on the next ``ensure``."""
        self._suspect = True

    def failed(self) -> None:
        """A call failed: renew, verify or recreate on the next ``ensure``."""
        self._checked_at = 0.0
        self._suspect = True

    def ensure(self) -> str:
        """A live session of this agent (registering the service first if needed)."""
        if not self._registered:
            self._register()
        if self.session is not None and not self._suspect:
            due = self.due_in()
            if due is None or due > 0:
                return self.session  # nothing to do until told, or until the next renewal
        if self.session is not None and self._still_alive(self.session):
            self._suspect = False
            self._checked_at = time.monotonic()
            return self.session
        if self.session is not None:
            if self.log:
                self.log.warning("session lost (check failed, TTL ran out, or the local Consul agent restarted); creating a new one",
                                 service=self.service_id, session=self.session)
            self._register()  # the local agent may have restarted: its registration may be gone too
        self._end_previous_incarnation()
        checks = ["serfHealth", self.check_id] if self.health_url else None
        self.session = self.gateway.create_session(self.name, ttl=None if self.health_url else self.ttl, checks=checks)
        self.memory.put("session", self.session)
        self._suspect = False
        self._checked_at = time.monotonic()
        return self.session

    def release(self) -> None:
        """End the session (its status key goes with it); the TTL or the check cleans up if this fails."""
        if not self.session:
            return
        try:
            self.gateway.destroy_session(self.session)
            self.memory.delete("session")
        except MaintenanceAgentError:
            pass

    def _still_alive(self, session: str) -> bool:
        if self.health_url is None:
            alive = self.gateway.renew_session(session)
            if alive:
                self.gateway.pass_agent_check(self.check_id)
            return alive
        return self.gateway.session_info(session) is not None

    def _register(self) -> None:
        check = http_check(self.check_id, self.health_url, self.interval) if self.health_url else ttl_check(self.check_id, self.ttl * 2)
        self.gateway.register_agent_service(self.service_id, self.tags, self.meta, check)
        self._registered = True

    def _end_previous_incarnation(self) -> None:
        """Our previous life's session (agent killed) would block the acquire until it died: end it now."""
        previous = self.memory.get("session")
        if previous and previous != self.session:
            try:
                self.gateway.destroy_session(previous)
            except MaintenanceAgentError:
                pass
