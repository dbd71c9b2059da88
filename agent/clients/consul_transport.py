"""ConsulTransport: the one HTTP client every request to Consul goes through.

Every call of the gateway, in the agent and in ``maintctl`` (KV reads and
blocking queries, transactions, writes, sessions, the local agent's
endpoints), is one ``request`` here; py-consul's API sends its requests here
too (``consul_api``). What is decided here, once for all of them:

- **TLS**, from the connection settings (``agent.config.connection``): the CA
  file, a client certificate and key, the name Consul's certificate must
  carry, verification on or off; one context per transport.
- **Deadlines**: a connect (TCP and the TLS handshake) waits at most the
  request timeout; an answer may take the request timeout, a blocking
  query's ``wait + max(wait/15, 1 s)`` more (Consul adds up to wait/16 of
  jitter). A Consul that accepts a connection and never answers cannot hang
  a thread, and a dead address is known within the request timeout.
- **What counts as an answer**: a 2xx, and the statuses the caller names
  (404: a missing key; 409: a transaction rolled back). An answer whose
  ``Content-Length`` or ``X-Consul-Index`` is malformed, that is cut short,
  that announces or streams more than ``MAX_BODY``, or a 1xx where the answer
  belongs is a broken answer; an announced size over the bound is refused
  before a byte of the body is read.
- **The token**, checked once: one a header cannot carry (a CR or LF would
  start a header of its own) is refused before any request is sent.

HTTP itself is the standard library's ``http.client``; each thread keeps one
keep-alive connection (the daemon's threads share one gateway). Failures are
``TransportFailure`` subclasses (``consul_failures``), whose ``typed()`` is
the one mapping to the core's errors.
"""

from __future__ import annotations

import http.client
import json
import re
import select
import socket
import ssl
import threading
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import quote, urlencode, urlsplit

from agent.clients.consul_failures import BrokenAnswer, Refused, Unreachable, connection_failure
from agent.config.connection import token_problem

MAX_BODY = 16 * 1024 * 1024
"""The largest answer read. The biggest Consul sends us is the status prefix: about 1 KB a box (a ~600-byte status,
base64, in its entry), 10 MB for 10 000 boxes."""
DEFAULT_WAIT = 300.0
"""What Consul waits on a blocking query that names no ``wait``."""
ANSWERS = frozenset({404})
"""Statuses besides 2xx that are answers by default: Consul's "no such key / session"."""
USER_AGENT = "maintenance-agent"

_READ_BLOCK = 1 << 16
_MAX_INDEX = 2**64 - 1  # Consul's indexes are uint64
_DIGITS = re.compile(r"[0-9]{1,20}")
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_wait(text: str) -> float:
    """Seconds of a Go duration as Consul reads ``wait`` (``60s``, ``1m30s``); ``ValueError`` otherwise."""
    parts = _DURATION.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise ValueError(f"{text!r} is not a duration like 60s")
    return sum(float(number) * _UNITS[unit] for number, unit in parts)


def answer_timeout(params: Iterable[tuple[str, Any]], request_timeout: float) -> float:
    """Seconds an answer may take: the request timeout, and a blocking query's wait and Consul's jitter on top."""
    given = dict(params)
    if "index" not in given:
        return request_timeout
    wait = parse_wait(str(given["wait"])) if "wait" in given else DEFAULT_WAIT
    return wait + max(wait / 15.0, 1.0) + request_timeout


# -- answers ------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What Consul answered: the status, its headers, the body, and ``X-Consul-Index`` (None when it sent none)."""

    status: int
    headers: http.client.HTTPMessage
    body: bytes
    index: int | None

    def text(self) -> str:
        try:
            return self.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BrokenAnswer(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None

    def json(self) -> Any:
        try:
            return json.loads(self.text())
        except ValueError as exc:
            raise BrokenAnswer(f"not JSON ({exc}): {_said(self.body)[:80]!r}") from None


def _said(body: bytes) -> str:
    return body.decode("utf-8", "replace").strip()[:200]


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out")
    return left


class _DeadlineSocket(socket.socket):
    """A TCP socket whose every read waits at most until ``deadline`` (``time.monotonic``).

    A socket timeout alone bounds each read, not the answer: one that trickles
    in a byte at a time (headers, chunk sizes, the body) would never end.
    ``http.client`` reads through ``recv_into``, so this bounds all of it.
    """

    deadline = float("inf")

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        self.settimeout(_left(self.deadline))
        return super().recv_into(buffer, nbytes, flags)


class _DeadlineSSLSocket(ssl.SSLSocket):
    """The same over TLS (the context's ``sslsocket_class``)."""

    deadline = float("inf")

    def recv_into(self, buffer: Any, nbytes: int | None = None, flags: int = 0) -> int:
        self.settimeout(_left(self.deadline))
        return super().recv_into(buffer, nbytes, flags)


class _Connection(http.client.HTTPConnection):
    """One connection to Consul: TCP within the connect timeout, then TLS with the transport's context and server name."""

    def __init__(self, host: str, port: int, connect_timeout: float, tls: ssl.SSLContext | None, server_name: str):
        super().__init__(host, port, timeout=connect_timeout)
        self._tls = tls
        self._server_name = server_name
        self._reads: _DeadlineSocket | _DeadlineSSLSocket | None = None

    def connect(self) -> None:
        plain = socket.create_connection((self.host, self.port), self.timeout)
        sock = _DeadlineSocket(plain.family, plain.type, plain.proto, fileno=plain.detach())
        sock.settimeout(self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._tls is None:
            self.sock = self._reads = sock
            return
        try:
            secure = self._tls.wrap_socket(sock, server_hostname=self._server_name)  # the handshake, within the connect timeout
        except BaseException:
            sock.close()
            raise
        self.sock = self._reads = cast(_DeadlineSSLSocket, secure)  # the context's sslsocket_class

    def answer_by(self, deadline: float) -> None:
        """Every read of the next answer ends by ``deadline`` (``time.monotonic``)."""
        if self._reads is not None:
            self._reads.deadline = deadline
            self._reads.settimeout(_left(deadline))

    def dropped(self) -> bool:
        """Whether Consul closed this kept-alive connection (or sent what nobody asked for) since its last answer."""
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        return bool(poller.poll(0))


def _content_length(response: http.client.HTTPResponse, limit: int) -> int | None:
    """The announced body size (None: chunked, or until the connection closes); a broken or oversized one is refused."""
    encoding = response.getheader("Transfer-Encoding")
    lengths = [value.strip() for value in response.msg.get_all("Content-Length") or []]
    if encoding is not None:
        if encoding.strip().lower() != "chunked":
            raise BrokenAnswer(f"Transfer-Encoding {encoding[:40]!r} (Consul sends chunked or a length)")
        if lengths:
            raise BrokenAnswer("both Content-Length and chunked: the answer's length is ambiguous")
        return None
    if not lengths:
        return None
    if len(set(lengths)) != 1 or not _DIGITS.fullmatch(lengths[0]):
        raise BrokenAnswer(f"bad Content-Length {', '.join(lengths)[:40]!r}")
    length = int(lengths[0])
    if length > limit:
        raise BrokenAnswer(f"an answer of {length} bytes announced, over the {limit} this client reads")
    return length


def _consul_index(response: http.client.HTTPResponse) -> int | None:
    raw = response.getheader("X-Consul-Index")
    if raw is None:
        return None
    if not _DIGITS.fullmatch(raw.strip()) or int(raw) > _MAX_INDEX:
        raise BrokenAnswer(f"bad X-Consul-Index {raw[:40]!r}")
    return int(raw)


class ConsulTransport:
    """Requests to one Consul agent: one TLS setup, one deadline rule, typed failures, a connection per thread."""

    def __init__(self, address: str, token: str | None = None, request_timeout: float = 5.0, ca_file: str | None = None,
                 cert: tuple[str, str] | None = None, verify: bool = True, tls_server_name: str | None = None,
                 max_body: int = MAX_BODY):
        """``address`` is ``scheme://host:port`` (``agent.config.connection.normalise_address``)."""
        if token is not None and (problem := token_problem(token)):
            raise ValueError(f"the Consul token {problem}")
        parts = urlsplit(address)
        if parts.scheme not in ("http", "https") or not parts.hostname or not parts.port:
            raise ValueError(f"{address!r} is not an address like http://127.0.0.1:8500")
        self.address, self.scheme, self.host, self.port = address, parts.scheme, parts.hostname, parts.port
        self.request_timeout = request_timeout
        self.max_body = max_body
        self._token = token
        self._tls_settings = (ca_file, cert, verify)
        self._server_name = tls_server_name or self.host
        self._context: ssl.SSLContext | None = None
        self._context_lock = threading.Lock()
        self._local = threading.local()

    def request(self, method: str, path: str, params: Collection[tuple[str, Any]] = (), body: bytes | str | None = None,
                answers: Collection[int] = ANSWERS) -> Answer:
        """Send one request (``path`` is ``/v1/...``) and read its answer; a status outside 2xx and ``answers`` is ``Refused``."""
        target = quote(path, safe="/:") + (f"?{urlencode(list(params))}" if params else "")
        wait_for_answer = answer_timeout(params, self.request_timeout)
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self._token:
            headers["X-Consul-Token"] = self._token
        data = body.encode() if isinstance(body, str) else body
        for attempt in (1, 2):
            conn, reused = self._connection()
            try:
                response = self._send(conn, method, target, data, headers, wait_for_answer)
            except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError) as exc:
                self.close()
                if reused and method == "GET" and attempt == 1:
                    continue  # a kept-alive connection Consul closed as we sent: a GET is safe to send again
                raise Unreachable(connection_failure(exc)) from None
            except http.client.HTTPException as exc:  # a status line or headers that are not HTTP
                self.close()
                raise BrokenAnswer(f"not an HTTP answer ({type(exc).__name__}: {str(exc)[:80]})") from None
            except OSError as exc:  # refused, DNS, TLS, timed out
                self.close()
                raise Unreachable(connection_failure(exc)) from None
            try:
                answer = self._read(response)
            except BaseException:
                self.close()
                raise
            if response.will_close:
                self.close()
            if 200 <= answer.status < 300 or answer.status in answers:
                return answer
            raise Refused(answer.status, _said(answer.body))
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def close(self) -> None:
        """Close this thread's connection (its next request opens a new one)."""
        conn: _Connection | None = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    # -- plumbing ---------------------------------------------------------------

    def _connection(self) -> tuple[_Connection, bool]:
        """This thread's connection, and whether it is a kept-alive one (one Consul closed is replaced first)."""
        conn: _Connection | None = getattr(self._local, "conn", None)
        if conn is not None and conn.sock is not None and not conn.dropped():
            return conn, True
        self.close()
        conn = self._local.conn = _Connection(self.host, self.port, self.request_timeout, self._tls(), self._server_name)
        return conn, False

    def _tls(self) -> ssl.SSLContext | None:
        if self.scheme != "https":
            return None
        with self._context_lock:
            if self._context is None:
                ca_file, cert, verify = self._tls_settings
                context = ssl.create_default_context(cafile=ca_file)
                if not verify:
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                if cert is not None:
                    context.load_cert_chain(*cert)
                self._context = context
            return self._context

    @staticmethod
    def _send(conn: _Connection, method: str, target: str, data: bytes | None, headers: dict[str, str],
              wait_for_answer: float) -> http.client.HTTPResponse:
        if conn.sock is None:
            conn.connect()  # within the request timeout, TLS handshake included
        conn.answer_by(time.monotonic() + wait_for_answer)
        conn.request(method, target, body=data, headers=headers)
        return conn.getresponse()

    def _read(self, response: http.client.HTTPResponse) -> Answer:
        """The rest of the answer, within ``max_body`` (and the deadline its socket enforces)."""
        if response.status < 200:  # http.client skips 100 Continue; any other 1xx would be taken as the answer
            raise BrokenAnswer(f"HTTP {response.status} (an interim answer) where the answer belongs")
        length = _content_length(response, self.max_body)
        index = _consul_index(response)
        pieces: list[bytes] = []
        size = 0
        while True:
            try:
                piece = response.read(min(_READ_BLOCK, self.max_body + 1 - size))
            except http.client.IncompleteRead as exc:
                raise BrokenAnswer(f"answer cut short after {size + len(exc.partial)} bytes") from None
            except http.client.HTTPException as exc:
                raise BrokenAnswer(f"unreadable body ({type(exc).__name__})") from None
            except OSError as exc:
                raise Unreachable(f"{connection_failure(exc)} reading the answer") from None
            if not piece:
                break
            size += len(piece)
            if size > self.max_body:
                raise BrokenAnswer(f"an answer of more than {self.max_body} bytes")
            pieces.append(piece)
        if length is not None and size < length:
            raise BrokenAnswer(f"answer cut short: {size} of {length} bytes")
        return Answer(response.status, response.msg, b"".join(pieces), index)
