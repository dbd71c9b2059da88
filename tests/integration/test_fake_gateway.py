"""The unit tests' FakeGateway keeps Consul's lock rules: the same moves against real Consul and the fake, the same outcomes.

The status reporter's conflict paths (a key held by its own earlier life, by a twin, a session that ended) are
unit-tested against the fake; this is what makes those tests worth something.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import requests

from agent.clients.consul import ConsulGateway
from agent.core.errors import MaintenanceAgentError
from demo.harness.consul import ConsulAgentProcess
from tests.fakes import FakeGateway

Release = Callable[[str, str, str], bool]  # key, value, session -> written


def moves(gateway: Any, release: Release, key: str) -> list[object]:
    """Acquire, contend, write plainly, release, check-and-set, end a session, delete a held key: what each gave."""
    one, two = gateway.create_session("one", ttl=None), gateway.create_session("two", ttl=None)
    names = {one: "one", two: "two", None: None}

    def seen() -> tuple[object, object]:
        read = gateway.get_key(key)
        return (read.value, names.get(read.session, "?")) if read.exists else ("missing", None)

    out: list[object] = []

    def note(label: str, move: Callable[[], object]) -> None:
        try:
            result = move()
        except MaintenanceAgentError as exc:
            result = type(exc).__name__
        out.append((label, result, seen()))

    note("one acquires", lambda: gateway.put_key(key, "a", acquire=one))
    note("two contends", lambda: gateway.put_key(key, "b", acquire=two))
    note("a plain write keeps the lock", lambda: gateway.put_key(key, "c"))
    note("the holder writes again", lambda: gateway.put_key(key, "d", acquire=one))
    note("two may not release it", lambda: release(key, "e", two))
    note("one releases", lambda: release(key, "f", one))
    note("two acquires the free key", lambda: gateway.put_key(key, "g", acquire=two))
    note("cas and acquire together are refused", lambda: gateway.put_key(key, "h", cas=1, acquire=two))
    note("a cas write keeps the lock", lambda: gateway.put_key(key, "h", cas=gateway.get_key(key).modify_index))
    note("a stale cas write fails", lambda: gateway.put_key(key, "i", cas=1))
    note("two ends", lambda: gateway.destroy_session(two))
    note("its end deleted its key", lambda: gateway.session_info(two))
    note("one lives on", lambda: (gateway.session_info(one) or {}).get("Name"))
    note("one acquires again", lambda: gateway.put_key(key, "j", acquire=one))
    note("a held key can be deleted", lambda: gateway.delete_key(key))
    note("a session that never was", lambda: gateway.put_key(key, "k", acquire=str(uuid.uuid4())))
    gateway.destroy_session(one)
    return out


def test_the_fake_and_consul_agree_on_locks_and_sessions(consul_server: ConsulAgentProcess, environment: str) -> None:
    key = f"maintenance/{environment}/status/box-1"

    def release_in_consul(key: str, value: str, session: str) -> bool:
        answer = requests.put(f"{consul_server.address}/v1/kv/{key}", params={"release": session}, data=value, timeout=5)
        answer.raise_for_status()
        return bool(answer.json())

    fake = FakeGateway()
    real = moves(ConsulGateway(consul_server.address), release_in_consul, key)
    assert moves(fake, lambda k, v, s: fake.put_key(k, v, release=s), key) == real
    assert real[0] == ("one acquires", True, (b"a", "one")), real  # the scenario means what it says
    assert real[1] == ("two contends", False, (b"a", "one")), real
