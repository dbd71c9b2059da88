"""ConsulGateway: the only code that speaks Consul's HTTP API.

Every call is one request through ``ConsulTransport`` (``consul_transport``):
one TLS setup, one deadline rule (a connect waits at most the request
timeout; a blocking query's answer ``wait + max(wait/15, 1s)`` more), one
mapping of what Consul answers to the core's typed errors, by the HTTP status
code, never by the error text: ``ConsulUnavailable`` for anything worth
retrying (no answer, a broken one, 429, 5xx), ``ConsulPermissionDenied`` for
403 (naming the ACL rule the call needs), ``PermanentError`` for the other
4xx. The gateway names each call (``what``) and its rule for those errors.

Writes, sessions and the local agent's endpoints use py-consul's API on that
transport (``consul_api``, imported on first use). Reads (a key, a prefix,
the membership) and the read-only transactions go to the transport directly:
a read is a GET and a decode of a few lines, and importing py-consul's API
would cost every ``maintctl status`` about 12 ms, half of what ``consul kv
get`` takes in all; py-consul sends ``/v1/txn`` without the token and takes
its 409 (which keys are missing) for an error. The token is decided
explicitly (config, then token file, then ``CONSUL_HTTP_TOKEN``: py-consul
would let the environment override the one given in code) and sent by the
transport. Whoever needs only keys and the membership asks for the
``ConsulKV`` protocol, which the unit tests' in-memory fake also satisfies.
"""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from agent.clients.consul_failures import BrokenAnswer, Refused, TransportFailure
from agent.clients.consul_transport import ConsulTransport
from agent.clients.consul_txn import read_keys_txn
from agent.config.connection import normalise_address
from agent.core.model import Member

if TYPE_CHECKING:  # py-consul's API, imported on first use: a reading command never pays for it
    from agent.clients.consul_api import ConsulClient
    from agent.config.connection import ConsulConnection

T = TypeVar("T")
S = TypeVar("S")

AGENT_SERVICE = "maintenance-agent"
NODE_MAINTENANCE_CHECK = "_node_maintenance"


@dataclass(frozen=True)
class KeyRead:
    """One read of one key: the query's index and the key (or None if missing)."""

    index: int
    value: bytes | None
    modify_index: int = 0
    session: str | None = None

    @property
    def exists(self) -> bool:
        return self.value is not None


class ConsulKV(Protocol):
    """What the operator's side and the partners need of Consul: keys, check-and-set, the membership.

    ``ConsulGateway`` is the real one; the unit tests' in-memory fake
    (``tests.fakes.FakeGateway``) keeps Consul's check-and-set rules.
    """

    address: str

    def get_key(self, key: str, index: int = 0, wait: float | None = None, consistent: bool = False) -> KeyRead: ...
    def read_prefix(self, prefix: str, index: int = 0, wait: float | None = None) -> tuple[int, dict[str, KeyRead]]: ...
    def list_prefix(self, prefix: str) -> dict[str, KeyRead]: ...
    def read_keys(self, keys: Collection[str]) -> dict[str, KeyRead]: ...
    def put_key(self, key: str, value: bytes | str, cas: int | None = None, acquire: str | None = None) -> bool: ...
    def delete_key(self, key: str, cas: int | None = None) -> bool: ...
    def members(self, environment: str, index: int = 0, wait: float | None = None,
                roles: Collection[str] | None = None, box: str = "") -> tuple[int, list[Member]]: ...


def members_filter(roles: Collection[str], box: str) -> str:
    """Consul's filter for the instances holding one of ``roles``, or registered for ``box``."""
    def quoted(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    terms = [f"{quoted('role:' + r)} in Service.Tags" for r in sorted(roles)]
    if box:
        terms.append(f"Service.Meta.box == {quoted(box)}")
    return " or ".join(terms) or "Service.ID == \"\""


def ttl_check(check_id: str, ttl: int) -> dict[str, Any]:
    """A check the agent passes itself (``pass_agent_check``); critical when it stops."""
    # No DeregisterCriticalServiceAfter (here and below): a dead agent must keep
    # blocking the gates visibly until an operator releases or deregisters its box.
    return {"CheckID": check_id, "Name": "maintenance-agent alive", "TTL": f"{ttl}s", "Status": "passing"}


def http_check(check_id: str, url: str, interval: float) -> dict[str, Any]:
    """A check the local Consul agent runs against the agent's ``/healthz``: nothing to send to keep it passing.

    It starts passing, so a session can be bound to it at once (and re-registering
    it never flips it to critical in between).
    """
    return {"CheckID": check_id, "Name": "maintenance-agent alive", "HTTP": url, "Method": "GET",
            "Interval": f"{interval:g}s", "Timeout": f"{max(1.0, interval / 2):g}s", "Status": "passing"}


class ConsulGateway:
    """One box's (or one maintctl command's) Consul: every call named, sent through one transport, failing with a typed error."""

    def __init__(
        self,
        address: str = "http://127.0.0.1:8500",
        token: str | None = None,
        request_timeout: float = 5.0,
        ca_file: str | None = None,
        cert: tuple[str, str] | None = None,
        verify: bool = True,
        tls_server_name: str | None = None,
    ):
        self.address = normalise_address(address)  # the one default port rule: 8500 for http, 8501 for https
        # Decide the token here, not through the environment behind our back; the transport refuses one a header cannot carry.
        self._transport = ConsulTransport(self.address, token=token, request_timeout=request_timeout, ca_file=ca_file, cert=cert,
                                          verify=verify, tls_server_name=tls_server_name)
        self.requests = 0  # requests sent, for the metrics and the idle benchmark

    @classmethod
    def connect(cls, connection: ConsulConnection, request_timeout: float = 5.0) -> ConsulGateway:
        """A gateway for resolved connection settings (address, token, TLS)."""
        return cls(
            connection.address,
            token=connection.token,
            request_timeout=request_timeout,
            ca_file=str(connection.ca_file) if connection.ca_file else None,
            cert=(str(connection.cert_file), str(connection.key_file)) if connection.cert_file and connection.key_file else None,
            verify=connection.verify,
            tls_server_name=connection.tls_server_name,
        )

    def close(self) -> None:
        """Close the calling thread's connection to Consul."""
        self._transport.close()

    # -- plumbing ---------------------------------------------------------

    @functools.cached_property
    def _api(self) -> ConsulClient:
        """py-consul's API on this gateway's transport."""
        from agent.clients.consul_api import ConsulClient

        return ConsulClient(self._transport)

    def _call(self, what: str, fn: Callable[[], T], rule: str = "") -> T:
        """One request: what the transport could not get becomes the core's typed error, naming ``what`` and ``rule``."""
        self.requests += 1
        return self._typed(what, fn, rule)

    def _typed(self, what: str, fn: Callable[[], T], rule: str = "") -> T:
        try:
            return fn()
        except TransportFailure as exc:
            raise exc.typed(self.address, what, rule) from None

    def _get(self, path: str, params: list[tuple[str, Any]], what: str, rule: str,
             decode: Callable[[int, Any], T]) -> T:
        """A GET through the transport: ``decode(index, JSON or None when Consul says 404)``; a shape it cannot read is a broken answer."""
        def read() -> T:
            answer = self._transport.request("GET", path, params)
            body = None if answer.status == 404 else answer.json()
            try:
                return decode(answer.index or 0, body)
            except (KeyError, TypeError, ValueError, binascii.Error) as exc:
                raise BrokenAnswer(f"unexpected {type(exc).__name__} reading it: {str(exc)[:120]}") from None

        return self._call(what, read, rule)

    # -- KV -----------------------------------------------------------------

    def get_key(self, key: str, index: int = 0, wait: float | None = None, consistent: bool = False) -> KeyRead:
        """Read ``key``; with ``index`` > 0 block until it changes or ``wait`` passes."""
        params = _blocking(index, wait) + ([("consistent", "")] if consistent else [])

        def one(idx: int, items: Any) -> KeyRead:
            return _key_read(idx, items[0]) if items else KeyRead(index=idx, value=None)

        return self._get(f"/v1/kv/{key}", params, f"read of {key}", f'key_prefix "{key}" {{ policy = "read" }}', one)

    def list_prefix(self, prefix: str) -> dict[str, KeyRead]:
        return self.read_prefix(prefix)[1]

    def read_prefix(self, prefix: str, index: int = 0, wait: float | None = None) -> tuple[int, dict[str, KeyRead]]:
        """Every key under ``prefix`` and the query's index; blocks like ``get_key`` when ``index`` > 0."""
        def every(idx: int, items: Any) -> tuple[int, dict[str, KeyRead]]:
            return idx, {str(item["Key"]): _key_read(idx, item) for item in items or []}

        return self._get(f"/v1/kv/{prefix}", [("recurse", ""), *_blocking(index, wait)], f"list of {prefix}",
                         f'key_prefix "{prefix}" {{ policy = "list" }}', every)

    def read_keys(self, keys: Collection[str]) -> dict[str, KeyRead]:
        """Each of ``keys`` in read-only transactions (``consul_txn``): a cost that follows the keys asked for, where a
        prefix read would return the whole fleet's statuses to learn a few. A key's ``index`` is its ModifyIndex (a
        blocking read on it returns above); a missing key's is 1, so a blocking read on it returns at once."""
        def send(ops: str, what: str, rule: str) -> tuple[int, Any]:
            # Around py-consul's Txn.put, which sends no token and takes the 409 (keys missing) for an error.
            def put() -> tuple[int, Any]:
                answer = self._transport.request("PUT", "/v1/txn", body=ops, answers={409})
                return answer.status, answer.json()

            return self._call(what, put, rule)

        def decoded() -> dict[str, KeyRead]:
            try:
                found = read_keys_txn(send, list(keys))
                return {key: _key_read(int(item["ModifyIndex"]), item) if item else KeyRead(index=1, value=None)
                        for key, item in found.items()}
            except (AttributeError, KeyError, TypeError, ValueError, binascii.Error) as exc:
                raise BrokenAnswer(f"unexpected {type(exc).__name__} reading a transaction's results: {str(exc)[:120]}") from None

        return self._typed(f"read of {len(keys)} keys", decoded)

    def put_key(self, key: str, value: bytes | str, cas: int | None = None, acquire: str | None = None) -> bool:
        """Write; returns False when a ``cas`` or ``acquire`` condition was not met."""
        rule = f'key "{key}" {{ policy = "write" }}'
        return self._call(f"write of {key}", lambda: _verdict(self._api.kv.put(key, value, cas=cas, acquire=acquire)), rule=rule)

    def delete_key(self, key: str, cas: int | None = None) -> bool:
        return self._call(f"delete of {key}", lambda: _verdict(self._api.kv.delete(key, cas=cas)), rule=f'key "{key}" {{ policy = "write" }}')

    # -- sessions -------------------------------------------------------------

    def create_session(self, name: str, ttl: int | None, node: str | None = None, checks: list[str] | None = None) -> str:
        """A session whose keys are deleted when it dies: its TTL runs out, or one of ``checks`` goes critical."""
        def create() -> str:
            session = self._api.session.create(name=name, node=node, behavior="delete", ttl=ttl, lock_delay=0, checks=checks or [])
            return _shaped(session, str, "a session create")

        return self._call("session create", create, rule='session_prefix "" { policy = "write" }')

    def renew_session(self, session_id: str) -> bool:
        """True if renewed, False if the session no longer exists."""
        def renew() -> bool:
            try:
                return self._api.session.renew(session_id) is not None
            except Refused as exc:
                if exc.status == 404:  # Consul's "no such session"
                    return False
                raise

        return self._call("session renew", renew, rule='session_prefix "" { policy = "write" }')

    def session_info(self, session_id: str) -> dict[str, Any] | None:
        """The session's record (``Name``, ``Node``, ``Checks``...), or None when it no longer exists."""
        _, info = self._call("session info", lambda: self._api.session.info(session_id), rule='session_prefix "" { policy = "read" }')
        return dict(info) if info else None

    def destroy_session(self, session_id: str) -> None:
        self._call("session destroy", lambda: self._api.session.destroy(session_id), rule='session_prefix "" { policy = "write" }')

    # -- the local agent ------------------------------------------------------

    def register_agent_service(self, service_id: str, tags: list[str], meta: dict[str, str], check: dict[str, Any]) -> None:
        """Register this box's service on the local agent with one check (``ttl_check`` or ``http_check``)."""
        self._call("service register",
                   lambda: self._api.agent.service.register(AGENT_SERVICE, service_id=service_id, tags=tags, meta=meta, check=check),
                   rule=f'service "{AGENT_SERVICE}" {{ policy = "write" }}')

    def agent_has_service(self, service_id: str) -> bool:
        """Whether the local agent still has ``service_id`` registered (a dev agent restarted forgets it; one with a
        data dir keeps it, with its checks and their schedule)."""
        def read() -> bool:
            return service_id in _shaped(self._api.agent.services(), dict, "the agent's services")

        return self._call("agent services", read, rule=f'service "{AGENT_SERVICE}" {{ policy = "read" }}')

    def pass_agent_check(self, check_id: str, note: str = "") -> None:
        self._call("check update", lambda: self._api.agent.check.ttl_pass(check_id, notes=note),
                   rule=f'service "{AGENT_SERVICE}" {{ policy = "write" }}')

    def set_node_maintenance(self, enable: bool, reason: str) -> None:
        """What ``consul maint -enable/-disable -reason`` calls on the local agent."""
        self._call("node maintenance", lambda: self._api.agent.maintenance(enable, reason=reason or None), rule='node "<this node>" { policy = "write" }')

    def node_maintenance(self) -> tuple[bool, str]:
        """Whether the local node is in maintenance, and the check's reason."""
        def read() -> tuple[bool, str]:
            check = _shaped(self._api.agent.checks(), dict, "the agent's checks").get(NODE_MAINTENANCE_CHECK)
            return (check is not None, str(_shaped(check or {}, dict, "the node maintenance check").get("Notes", "")))

        return self._call("agent checks", read, rule='node "<this node>" { policy = "read" }')

    # -- membership -----------------------------------------------------------

    def members(self, environment: str, index: int = 0, wait: float | None = None,
                roles: Collection[str] | None = None, box: str = "") -> tuple[int, list[Member]]:
        """The boxes registered for ``environment``; blocks like a KV read when ``index`` > 0.

        With ``roles``, only the boxes holding one of them, and ``box`` (Consul filters: a gate on 40 web boxes of a
        fleet of 1000 reads 40 entries, not 1000).
        """
        params = [("tag", f"env:{environment}"), *([("filter", members_filter(roles, box))] if roles is not None else []),
                  *_blocking(index, wait)]
        return self._get(f"/v1/health/service/{AGENT_SERVICE}", params, "service health",
                         f'service "{AGENT_SERVICE}" {{ policy = "read" }}', lambda idx, entries: (idx, [_member(e) for e in entries or []]))


def _verdict(answer: Any) -> bool:
    """A KV write's answer: Consul says ``true`` or ``false`` (a condition not met), nothing else."""
    return _shaped(answer, bool, "a write")


def _shaped(answer: Any, kind: type[S], what: str) -> S:
    """``answer`` if it is what Consul answers there (a 404 where none is expected reads as None through py-consul)."""
    if not isinstance(answer, kind) or (kind is str and not answer):
        raise BrokenAnswer(f"{what} answered {str(answer)[:80]!r}, not a {kind.__name__}")
    return answer


def _blocking(index: int, wait: float | None) -> list[tuple[str, Any]]:
    """A blocking query's parameters: none at index 0 (never block on 0), else the index and a bounded wait."""
    return [("index", index), ("wait", f"{int(wait or 60)}s")] if index > 0 else []


def _member(entry: dict[str, Any]) -> Member:
    """One entry of ``/v1/health/service``: the box, its roles and whether its own checks pass."""
    service = entry["Service"]
    checks = entry.get("Checks", [])
    own = [c for c in checks if c.get("ServiceID") == service["ID"]]
    output = "; ".join(f"{c.get('Name')}: {c.get('Status')}" for c in checks if c.get("Status") != "passing")
    meta = service.get("Meta") or {}
    return Member(
        box=meta.get("box", service["ID"]),
        roles=tuple(t.removeprefix("role:") for t in service.get("Tags", []) if t.startswith("role:")),
        consul_node=entry["Node"]["Node"],
        alive=all(c.get("Status") == "passing" for c in own) if own else False,
        check_output=output,
        order=tuple(r for r in (meta.get("order") or "").split(",") if r),
    )


def _key_read(index: int, item: dict[str, Any]) -> KeyRead:
    """One KV entry as Consul returns it (``Value`` base64, null for an empty value)."""
    value = item.get("Value")
    return KeyRead(index=index, value=base64.b64decode(value, validate=True) if value is not None else b"",
                   modify_index=int(item["ModifyIndex"]), session=item.get("Session"))
