"""Every kind of Consul call maps Consul's answer to the core's typed error by the HTTP status code, not by its text.

A real socket server on loopback (``tests.fixtures.raw_http``) answers each
request with a scripted status and body; the gateway talks real HTTP to it.
For each call (a read, a write, a session, a transaction, the membership, the
local agent's node maintenance) the test asserts the exact error type, the
retry policy the reconciler derives from it (``retry_delay``), what the
message names (the call, the status, what Consul said; for a 403 the ACL rule
the call needs), and that the gateway sent the request once: a refusal is
reported, not retried behind the caller's back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from agent.clients.consul import ConsulGateway
from agent.core.errors import ConsulPermissionDenied, ConsulUnavailable, MaintenanceAgentError, PermanentError, retry_delay
from tests.fixtures.raw_http import RawHttpServer, Reply, Request, answer

BACKOFF, SLOW = 0.5, 30.0

CALLS: dict[str, tuple[Callable[[ConsulGateway], Any], str, str]] = {
    # name: (the call, what the message calls it, the ACL rule it needs)
    "read": (lambda g: g.get_key("maintenance/t/desired"), "read of maintenance/t/desired",
             'key_prefix "maintenance/t/desired" { policy = "read" }'),
    "write": (lambda g: g.put_key("maintenance/t/desired", "on", cas=3), "write of maintenance/t/desired",
              'key "maintenance/t/desired" { policy = "write" }'),
    "session": (lambda g: g.create_session("agent", ttl=15), "session create", 'session_prefix "" { policy = "write" }'),
    "transaction": (lambda g: g.read_keys(["maintenance/t/status/a", "maintenance/t/status/b"]), "read of 2 keys",
                    'key_prefix "maintenance/t/status/" { policy = "read" }'),
    "membership": (lambda g: g.members("t"), "service health", 'service "maintenance-agent" { policy = "read" }'),
    "node maintenance": (lambda g: g.set_node_maintenance(True, "patch"), "node maintenance", 'node "<this node>" { policy = "write" }'),
}


class Scripted:
    """The answer every request gets; set by each test."""

    def __init__(self) -> None:
        self.reply = answer()

    def __call__(self, request: Request) -> Reply:
        return self.reply


@pytest.fixture
def consul() -> Iterator[tuple[RawHttpServer, Scripted]]:
    script = Scripted()
    server = RawHttpServer(script).start()
    try:
        yield server, script
    finally:
        server.stop()


def refused(server: RawHttpServer, call: str) -> MaintenanceAgentError:
    gateway = ConsulGateway(server.address, request_timeout=2.0)
    with pytest.raises(MaintenanceAgentError) as raised:
        CALLS[call][0](gateway)
    return raised.value


@pytest.mark.parametrize("call", list(CALLS))
@pytest.mark.parametrize(("status", "said", "error"), [
    (500, "rpc error making call: No cluster leader", ConsulUnavailable),
    (500, "Permission denied", ConsulUnavailable),  # the text does not make a 500 a refusal
    (503, "", ConsulUnavailable),
    (429, "Your IP is issuing too many concurrent connections", ConsulUnavailable),
    (400, "rpc error: No cluster leader", PermanentError),  # nor a 400 retryable
    (401, "ACL support disabled", PermanentError),
    (405, "method GET not allowed", PermanentError),
    (409, "conflict", PermanentError),
    (301, "moved", PermanentError),
])
def test_the_status_decides_the_error_and_its_retry_policy(consul: tuple[RawHttpServer, Scripted], call: str, status: int, said: str,
                                                            error: type[MaintenanceAgentError]) -> None:
    server, script = consul
    script.reply = answer(status, said.encode())
    failure = refused(server, call)
    what = CALLS[call][1]
    if call == "transaction" and status == 409:  # a transaction's 409 is an answer (which keys are missing): this one does not say
        assert type(failure) is ConsulUnavailable and f"gave a broken answer to {what}: not JSON" in str(failure)
        return
    assert type(failure) is error, f"{call}: HTTP {status} gave {type(failure).__name__}: {failure}"
    assert what in str(failure) and str(status) in str(failure) and said in str(failure)
    if error is ConsulUnavailable:
        assert retry_delay(failure, BACKOFF, SLOW) == 1.0, "retried soon: the hint of 1 s over the backoff's 0.5 s"
    else:
        assert retry_delay(failure, BACKOFF, SLOW) == SLOW, "a refusal is retried only at the slow rate"
    assert len(server.requests) == 1, "reported to the caller, not retried behind its back"


@pytest.mark.parametrize("call", list(CALLS))
def test_a_403_names_the_rule_the_call_needs(consul: tuple[RawHttpServer, Scripted], call: str) -> None:
    server, script = consul
    script.reply = answer(403, b"Permission denied")
    failure = refused(server, call)
    _, what, rule = CALLS[call]
    assert type(failure) is ConsulPermissionDenied
    assert failure.rule == rule
    assert str(failure) == f"Consul refused {what} (403 Permission denied) (needs ACL rule: {rule})"
    assert retry_delay(failure, BACKOFF, SLOW) == SLOW


@pytest.mark.parametrize("call", [c for c in CALLS if c != "node maintenance"])  # its 200 is the whole answer
@pytest.mark.parametrize("body", [b"not json", b"{\"Results\": 7}", b"\xff\xfe not utf-8"])
def test_an_answer_that_is_not_what_consul_sends_is_a_broken_answer(consul: tuple[RawHttpServer, Scripted], call: str, body: bytes) -> None:
    server, script = consul
    script.reply = answer(200, body)
    failure = refused(server, call)
    assert type(failure) is ConsulUnavailable
    assert f"Consul at {server.address} gave a broken answer to {CALLS[call][1]}" in str(failure)
    assert retry_delay(failure, BACKOFF, SLOW) == 1.0


def test_a_missing_key_is_no_error_and_a_missing_session_is_not_renewed(consul: tuple[RawHttpServer, Scripted]) -> None:
    server, script = consul
    script.reply = answer(404, b"", headers={"X-Consul-Index": "7"})
    gateway = ConsulGateway(server.address, request_timeout=2.0)
    read = gateway.get_key("maintenance/t/desired")
    assert not read.exists and read.index == 7
    assert gateway.renew_session("2f1a0c3e") is False


@pytest.mark.parametrize(("call", "what"), [
    (lambda g: g.create_session("agent", ttl=15), "session create"),  # py-consul reads a 404 here as "no session ID": None
    (lambda g: g.node_maintenance(), "agent checks"),
    (lambda g: g.put_key("maintenance/t/desired", "on"), "write of maintenance/t/desired"),
])
def test_a_404_where_the_answer_must_say_something_is_a_broken_answer(consul: tuple[RawHttpServer, Scripted],
                                                                      call: Callable[[ConsulGateway], Any], what: str) -> None:
    server, script = consul
    script.reply = answer(404, b"")
    with pytest.raises(ConsulUnavailable, match=f"gave a broken answer to {what}: .* answered 'None'"):
        call(ConsulGateway(server.address, request_timeout=2.0))
