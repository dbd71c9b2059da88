"""SessionKeeper: this box's service registration, and the Consul session that holds its status key.

The service's check is an HTTP check the local Consul agent runs on the
agent's own ``/healthz``, every quarter of ``session_ttl_seconds``; the
session has no TTL, only that check and the node's ``serfHealth``. Nothing
is sent to keep it alive: a dead or hung agent fails the check within one
interval, Consul invalidates the session and the status key (behaviour
``delete``) disappears. The session is only looked at again when the
reporter suspects it is gone (its status key changed or vanished, or a call
failed); a lost session is logged and recreated, re-registering the service
first (the local Consul agent may have restarted). A session this agent left
behind in an earlier life (killed) is ended, never another agent's.
"""

from __future__ import annotations

import threading
from typing import Any

from agent.clients.consul import ConsulGateway, http_check
from agent.core.errors import MaintenanceAgentError
from agent.daemon.local.statefile import StateFile


class SessionKeeper:
    def __init__(self, gateway: ConsulGateway, service_id: str, tags: list[str], meta: dict[str, str], memory: StateFile,
                 name: str, health_url: str, ttl: int = 15, log: Any = None):
        self.gateway = gateway
        self.service_id = service_id
        self.tags = tags
        self.meta = meta
        self.memory = memory
        self.name = name
        self.ttl = ttl
        self.health_url = health_url
        self.log = log
        # Only the reporter's writing thread calls ensure() and release(): these two are that thread's.
        self.session: str | None = None
        self._registered = False
        # Set from any thread (the reporter's watch on its own key): verify the session on the next ensure().
        self._suspect = threading.Event()

    @property
    def interval(self) -> float:
        """How often the local Consul agent runs the check (a dead agent is seen within it).

        A quarter of the TTL: after the local Consul agent restarts, the servers hold the check as critical
        until its first run, and no session can be bound to it before; checking a local ``/healthz`` that
        often costs the servers nothing (only a change of the check's state is synced to them)."""
        return max(1.0, self.ttl / 4)

    @property
    def check_id(self) -> str:
        return f"{self.service_id}:alive"

    def suspect(self) -> None:
        """The status key changed under us or vanished, or a call failed: verify (or recreate) the session on the next ``ensure``."""
        self._suspect.set()

    def ensure(self) -> str:
        """A live session of this agent (registering the service first if needed)."""
        if not self._registered:
            self._register()
        if self.session is not None and not self._suspect.is_set():
            return self.session  # nothing to do until told
        self._suspect.clear()  # before verifying: a suspicion raised meanwhile is kept for the next call
        try:
            if self.session is not None and self.gateway.session_info(self.session) is not None:
                return self.session
            if self.session is not None:
                if self.log:
                    self.log.warning("session lost (check failed, or the local Consul agent restarted); creating a new one",
                                     service=self.service_id, session=self.session)
                self._register_again()  # the local agent may have restarted: its registration may be gone too
            self._end_previous_incarnation()
            self.session = self.gateway.create_session(self.name, ttl=None, checks=["serfHealth", self.check_id])
        except BaseException:
            self._suspect.set()  # not verified: look again next time
            raise
        self.memory.put("session", self.session)
        return self.session

    def release(self) -> None:
        """End the session (its status key goes with it); the check cleans up if this fails."""
        if not self.session:
            return
        try:
            self.gateway.destroy_session(self.session)
            self.memory.delete("session")
        except MaintenanceAgentError:
            pass

    def _register(self) -> None:
        self.gateway.register_agent_service(self.service_id, self.tags, self.meta, http_check(self.check_id, self.health_url, self.interval))
        self._registered = True

    def _register_again(self) -> None:
        """Register again after a lost session only if the local agent forgot the service: a registration restarts
        the check's schedule, and a restarted Consul agent holds the check critical until it first runs, so
        registering at every retry could keep postponing the one run that lets a session bind to it."""
        if not self.gateway.agent_has_service(self.service_id):
            self._register()

    def _end_previous_incarnation(self) -> None:
        """Our previous life's session (agent killed) would block the acquire until it died: end it now."""
        previous = self.memory.get("session")
        if previous and previous != self.session:
            try:
                self.gateway.destroy_session(previous)
            except MaintenanceAgentError:
                pass
