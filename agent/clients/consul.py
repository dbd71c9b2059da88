"""ConsulGateway: the only code that speaks Consul's HTTP API.

Reads (keys, prefixes, the membership) go through ``ConsulReads``, a few
GETs over a plain socket (or TLS, with the same CA, client certificate and
server name as py-consul gets), so a command that only reads (``maintctl status``)
never pays for importing py-consul and ``requests``. Everything else wraps
py-consul, created on first use. The gateway puts a timeout on every call (a blocking query gets
``wait + max(wait/15, 1s)`` plus the request timeout, so a Consul that accepts
the connection and never answers cannot hang a thread), decides the token
explicitly (py-consul would let ``CONSUL_HTTP_TOKEN`` override the one given in
code), and turns every failure into a typed error: ``ConsulUnavailable`` for
anything worth retrying (connection refused, timeouts, 429, 5xx, no leader:
told by the HTTP status code, never by the error text), ``ConsulPermissionDenied``
for 403, ``PermanentError`` for the other 4xx.
Whoever needs only keys and the membership asks for the ``ConsulKV`` protocol,
which the unit tests' in-memory fake also satisfies.
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import urlsplit

from agent.clients.consul_http import ConsulReads, connection_failure
from agent.clients.consul_txn import read_keys_txn, txn_answer
from agent.core.errors import ConsulPermissionDenied, ConsulUnavailable, PermanentError
from agent.core.model import Member

if TYPE_CHECKING:  # imported on first use: ~70 ms that a reading command never pays
    import consul
    import requests
    from requests.adapters import HTTPAdapter

    from agent.config.connection import ConsulConnection

T = TypeVar("T")

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


class RetryableStatus(Exception):
    """Consul answered 429 or 5xx (no leader, an RPC error, overloaded): worth a retry."""

    def __init__(self, code: int, body: str):
        super().__init__(f"HTTP {code}")
        self.code = code
        self.body = body


def _refuse_retryable_status(response: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap py-consul's response hook so a 429 or 5xx is told by its status code, not by its text.

    py-consul turns a 5xx into a bare ``ConsulException`` and a 429 into a
    ``ClientError`` with the code only in the message; this raises before its
    callbacks run, with the code as a number.
    """
    def checked(answer: requests.Response, *args: Any, **kwargs: Any) -> Any:
        if answer.status_code == 429 or answer.status_code >= 500:
            raise RetryableStatus(answer.status_code, answer.text)
        return response(answer, *args, **kwargs)

    return checked


def members_filter(roles: Collection[str], box: str) -> str:
    """Consul's filter for the instances holding one of ``roles``, or registered for ``box``."""
    def quoted(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    terms = [f"{quoted('role:' + r)} in Service.Tags" for r in sorted(roles)]
    if box:
        terms.append(f"Service.Meta.box == {quoted(box)}")
    return " or ".join(terms) or "Service.ID == \"\""


def blocking_read_timeout(wait: float, request_timeout: float) -> float:
    """Client-side deadline of a blocking query: Consul may add up to wait/16 of jitter."""
    return wait + max(wait / 15.0, 1.0) + request_timeout


def _server_name_adapter(server_name: str) -> HTTPAdapter:
    """A requests adapter verifying Consul's certificate against ``server_name``, not the address's host (``-tls-server-name``)."""
    from requests.adapters import HTTPAdapter

    class ServerNameAdapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            kwargs["server_hostname"] = server_name
            kwargs["assert_hostname"] = server_name
            super().init_poolmanager(*args, **kwargs)

    return ServerNameAdapter()


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
        parts = urlsplit(address if "://" in address else f"http://{address}")
        self.address = f"{parts.scheme}://{parts.netloc if parts.port else f'{parts.netloc}:8500'}"
        self.request_timeout = request_timeout
        self._where = (parts.scheme, parts.hostname or "127.0.0.1", parts.port or 8500)
        self._tls = (ca_file, cert, verify, tls_server_name)
        # Decide the token here, not through the environment behind our back.
        self._token = token
        self._reads = ConsulReads(*self._where, token=token, ca_file=ca_file, cert=cert, verify=verify, tls_server_name=tls_server_name)
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

    # -- plumbing ---------------------------------------------------------

    @functools.cached_property
    def _client(self) -> consul.Consul:
        import consul

        scheme, host, port = self._where
        ca_file, cert, verify, server_name = self._tls
        client = consul.Consul(host=f"[{host}]" if ":" in host else host, port=port, scheme=scheme,
                               verify=ca_file if (verify and ca_file) else verify, cert=cert, connections_timeout=self.request_timeout)
        if server_name:
            client.http.session.mount("https://", _server_name_adapter(server_name))
        client.token = self._token
        client.http.timeout = self._timeout_for
        client.http.response = _refuse_retryable_status(client.http.response)
        return client

    @property
    def _token_header(self) -> dict[str, str] | None:
        """For the calls py-consul sends without the token (``/v1/txn``): Consul would answer them as anonymous."""
        return {"X-Consul-Token": self._token} if self._token else None

    def _timeout_for(self, params: Any) -> float:
        import consul.std

        params = dict(params or ())
        if "index" not in params:
            return self.request_timeout
        wait = consul.std.parse_duration(params.get("wait", "300s"))
        return blocking_read_timeout(wait, self.request_timeout)

    def _get(self, path: str, params: dict[str, Any], what: str, rule: str) -> tuple[int, Any]:
        """A read over the socket reader: (index, decoded JSON or None when Consul says 404)."""
        self.requests += 1
        wait = params.get("wait")
        timeout = blocking_read_timeout(float(wait.rstrip("s")), self.request_timeout) if wait else self.request_timeout
        reply = self._reads.get(path, params, timeout, what, rule)
        return reply.index, reply.body

    def _call(self, what: str, fn: Callable[[], T], rule: str = "") -> T:
        import consul
        import consul.exceptions as consul_errors
        import requests

        self.requests += 1
        try:
            return fn()
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise ConsulUnavailable(f"Consul at {self.address} unreachable during {what}: {connection_failure(exc)}", delay=1.0) from None
        except (requests.RequestException, ValueError) as exc:
            # A response cut short (Consul restarting mid-answer) or not JSON:
            # worth a retry, and must not kill the thread that asked.
            raise ConsulUnavailable(f"Consul at {self.address} gave a broken answer to {what}: {type(exc).__name__}: {str(exc)[:200]}",
                                    delay=1.0) from None
        except RetryableStatus as exc:
            raise ConsulUnavailable(f"Consul at {self.address} failed {what}: HTTP {exc.code} {exc.body.strip()[:200]}", delay=1.0) from None
        except consul.ACLPermissionDenied as exc:
            raise ConsulPermissionDenied(f"Consul refused {what} (403 {str(exc).strip()[:200]})", rule=rule) from None
        except (consul_errors.BadRequest, consul_errors.ACLDisabled, consul_errors.NotFound, consul_errors.ClientError) as exc:
            # any other 4xx (400, 401, 404 where it is not an answer, 405...): asking again will not help
            raise PermanentError(f"Consul at {self.address} refused {what}: {str(exc).strip()[:200]}") from None
        except consul.ConsulException as exc:
            # What py-consul raises itself once 429 and 5xx are taken out: an
            # answer it could not decode (no JSON, no index header), a retry.
            raise ConsulUnavailable(f"Consul at {self.address} gave a broken answer to {what}: {str(exc).strip()[:200]}", delay=1.0) from None

    # -- KV -----------------------------------------------------------------

    def get_key(self, key: str, index: int = 0, wait: float | None = None, consistent: bool = False) -> KeyRead:
        """Read ``key``; with ``index`` > 0 block until it changes or ``wait`` passes."""
        params: dict[str, Any] = {}
        if index > 0:
            params["index"] = index
            params["wait"] = f"{int(wait or 60)}s"
        if consistent:
            params["consistent"] = ""
        idx, items = self._get(f"/v1/kv/{key}", params, f"read of {key}", rule=f'key_prefix "{key}" {{ policy = "read" }}')
        if not items:
            return KeyRead(index=idx, value=None)
        return _key_read(idx, items[0])

    def list_prefix(self, prefix: str) -> dict[str, KeyRead]:
        return self.read_prefix(prefix)[1]

    def read_prefix(self, prefix: str, index: int = 0, wait: float | None = None) -> tuple[int, dict[str, KeyRead]]:
        """Every key under ``prefix`` and the query's index; blocks like ``get_key`` when ``index`` > 0."""
        params: dict[str, Any] = {"recurse": ""}
        if index > 0:
            params["index"] = index
            params["wait"] = f"{int(wait or 60)}s"
        idx, items = self._get(f"/v1/kv/{prefix}", params, f"list of {prefix}", rule=f'key_prefix "{prefix}" {{ policy = "list" }}')
        return idx, {item["Key"]: _key_read(idx, item) for item in items or []}

    def read_keys(self, keys: Collection[str]) -> dict[str, KeyRead]:
        """Each of ``keys`` in read-only transactions (``consul_txn``): a cost that follows the keys asked for, where a
        prefix read would return the whole fleet's statuses to learn a few. A key's ``index`` is its ModifyIndex (a
        blocking read on it returns above); a missing key's is 1, so a blocking read on it returns at once."""
        def send(ops: str, what: str, rule: str) -> tuple[int, Any]:
            answer: tuple[int, Any] = self._call(what, lambda: self._client.http.put(txn_answer, "/v1/txn", data=ops, headers=self._token_header),
                                                    rule=rule)
            return answer

        found = read_keys_txn(send, list(keys), self.address)
        return {key: _key_read(int(item["ModifyIndex"]), item) if item else KeyRead(index=1, value=None) for key, item in found.items()}

    def put_key(self, key: str, value: bytes | str, cas: int | None = None, acquire: str | None = None) -> bool:
        """Write; returns False when a ``cas`` or ``acquire`` condition was not met."""
        rule = f'key "{key}" {{ policy = "write" }}'
        return bool(self._call(f"write of {key}", lambda: self._client.kv.put(key, value, cas=cas, acquire=acquire), rule=rule))

    def delete_key(self, key: str, cas: int | None = None) -> bool:
        return bool(self._call(f"delete of {key}", lambda: self._client.kv.delete(key, cas=cas), rule=f'key "{key}" {{ policy = "write" }}'))

    # -- sessions -------------------------------------------------------------

    def create_session(self, name: str, ttl: int | None, node: str | None = None, checks: list[str] | None = None) -> str:
        """A session whose keys are deleted when it dies: its TTL runs out, or one of ``checks`` goes critical."""
        return str(self._call(
            "session create",
            lambda: self._client.session.create(name=name, node=node, behavior="delete", ttl=ttl, lock_delay=0, checks=checks or []),
            rule='session_prefix "" { policy = "write" }',
        ))

    def renew_session(self, session_id: str) -> bool:
        """True if renewed, False if the session no longer exists."""
        import consul

        def renew() -> bool:
            try:
                return self._client.session.renew(session_id) is not None
            except consul.NotFound:
                return False

        return self._call("session renew", renew, rule='session_prefix "" { policy = "write" }')

    def session_info(self, session_id: str) -> dict[str, Any] | None:
        """The session's record (``Name``, ``Node``, ``Checks``...), or None when it no longer exists."""
        _, info = self._call("session info", lambda: self._client.session.info(session_id), rule='session_prefix "" { policy = "read" }')
        return dict(info) if info else None

    def destroy_session(self, session_id: str) -> None:
        self._call("session destroy", lambda: self._client.session.destroy(session_id), rule='session_prefix "" { policy = "write" }')

    # -- the local agent ------------------------------------------------------

    def register_agent_service(self, service_id: str, tags: list[str], meta: dict[str, str], check: dict[str, Any]) -> None:
        """Register this box's service on the local agent with one check (``ttl_check`` or ``http_check``)."""
        import consul.callback

        rule = f'service "{AGENT_SERVICE}" {{ policy = "write" }}'
        body = {"ID": service_id, "Name": AGENT_SERVICE, "Tags": tags, "Meta": meta, "Check": check}
        self._call("service register", lambda: self._client.http.put(consul.callback.CB.boolean(), "/v1/agent/service/register",
                                                                    data=json.dumps(body), headers=self._client.prepare_headers()), rule=rule)

    def pass_agent_check(self, check_id: str, note: str = "") -> None:
        self._call("check update", lambda: self._client.agent.check.ttl_pass(check_id, notes=note),
                   rule=f'service "{AGENT_SERVICE}" {{ policy = "write" }}')

    def set_node_maintenance(self, enable: bool, reason: str) -> None:
        """What ``consul maint -enable/-disable -reason`` calls on the local agent."""
        self._call("node maintenance", lambda: self._client.agent.maintenance(enable, reason=reason or None), rule='node "<this node>" { policy = "write" }')

    def node_maintenance(self) -> tuple[bool, str]:
        """Whether the local node is in maintenance, and the check's reason."""
        checks = self._call("agent checks", self._client.agent.checks, rule='node "<this node>" { policy = "read" }')
        check = checks.get(NODE_MAINTENANCE_CHECK)
        return (check is not None, (check or {}).get("Notes", ""))

    # -- membership -----------------------------------------------------------

    def members(self, environment: str, index: int = 0, wait: float | None = None,
                roles: Collection[str] | None = None, box: str = "") -> tuple[int, list[Member]]:
        """The boxes registered for ``environment``; blocks like a KV read when ``index`` > 0.

        With ``roles``, only the boxes holding one of them, and ``box`` (Consul filters: a gate on 40 web boxes of a
        fleet of 1000 reads 40 entries, not 1000).
        """
        params: dict[str, Any] = {"tag": f"env:{environment}"}
        if roles is not None:
            params["filter"] = members_filter(roles, box)
        if index > 0:
            params["index"] = index
            params["wait"] = f"{int(wait or 60)}s"
        raw_index, entries = self._get(f"/v1/health/service/{AGENT_SERVICE}", params, "service health",
                                       rule=f'service "{AGENT_SERVICE}" {{ policy = "read" }}')
        members = []
        for entry in entries or []:
            service = entry["Service"]
            checks = entry.get("Checks", [])
            own = [c for c in checks if c.get("ServiceID") == service["ID"]]
            alive = all(c.get("Status") == "passing" for c in own) if own else False
            output = "; ".join(f"{c.get('Name')}: {c.get('Status')}" for c in checks if c.get("Status") != "passing")
            members.append(Member(
                box=(service.get("Meta") or {}).get("box", service["ID"]),
                roles=tuple(t.removeprefix("role:") for t in service.get("Tags", []) if t.startswith("role:")),
                consul_node=entry["Node"]["Node"],
                alive=alive,
                check_output=output,
                order=tuple(r for r in ((service.get("Meta") or {}).get("order") or "").split(",") if r),
            ))
        return int(raw_index or 0), members


def _key_read(index: int, item: dict[str, Any]) -> KeyRead:
    """One KV entry as Consul returns it (``Value`` base64, null for an empty value)."""
    value = item.get("Value")
    return KeyRead(index=index, value=base64.b64decode(value) if value is not None else b"",
                   modify_index=int(item["ModifyIndex"]), session=item.get("Session"))
