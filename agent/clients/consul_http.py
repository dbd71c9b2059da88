"""Consul's HTTP reads over a plain socket: the gateway's fast path.

Why not py-consul for these: importing it (and ``requests`` under it) costs
about 70 ms, several times what ``consul kv get`` takes in all, and an
operator runs ``maintctl status`` dozens of times in a window. Even
``http.client`` pulls in the ``email`` parser and ``ssl`` (about 12 ms). A
Consul read is a GET whose answer has a status line, a few headers and a
JSON body framed by ``Content-Length`` or chunked, so this module speaks
exactly that much HTTP/1.1 itself. The gateway still uses py-consul for
writes, sessions and the local agent's endpoints, created only when first needed.

One keep-alive connection per thread (the daemon's threads share one
gateway); a connection the server closed while idle is reopened once, which
is safe for a GET. Every failure becomes the core's typed error, as in the
gateway, by the HTTP status code: ``ConsulUnavailable`` (429, 5xx, a broken
answer: retry), ``ConsulPermissionDenied`` (403), ``PermanentError`` (any other 4xx).
"""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import quote, urlencode

from agent.core.errors import ConsulPermissionDenied, ConsulUnavailable, PermanentError

MAX_LINE = 65536
MAX_HEADERS = 100


class ProtocolError(OSError):
    """The answer is not the HTTP/1.1 this module reads (cut short, malformed)."""


class StaleConnection(OSError):
    """A kept-alive connection was closed by the server before it answered."""


@dataclass(frozen=True)
class Reply:
    """A GET's answer: HTTP status, Consul's index header, the decoded JSON body (None on 404)."""

    status: int
    index: int
    body: Any


@dataclass
class _Connection:
    sock: socket.socket
    stream: BinaryIO

    def close(self) -> None:
        self.stream.close()
        self.sock.close()


def _line(stream: BinaryIO) -> bytes:
    line = stream.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise ProtocolError("header line too long")
    return line


def read_response(stream: BinaryIO) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response from ``stream``: status, headers (lower-case names), body."""
    first = _line(stream)
    if not first:
        raise StaleConnection("connection closed before the status line")
    parts = first.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ProtocolError(f"not an HTTP/1.x status line: {first[:80]!r}")
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADERS):
        line = _line(stream)
        if line in (b"\r\n", b"\n"):
            break
        if not line:
            raise ProtocolError("connection closed inside the headers")
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise ProtocolError(f"malformed header line: {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    else:
        raise ProtocolError("too many header lines")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return int(parts[1]), headers, _read_chunked(stream)
    if "content-length" in headers:
        length = int(headers["content-length"])
        body = stream.read(length)
        if len(body) != length:
            raise ProtocolError(f"body cut short: {len(body)} of {length} bytes")
        return int(parts[1]), headers, body
    headers["connection"] = "close"  # no framing: the body runs to the end of the connection
    return int(parts[1]), headers, stream.read()


def _read_chunked(stream: BinaryIO) -> bytes:
    chunks: list[bytes] = []
    while True:
        size_line = _line(stream).split(b";", 1)[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError:
            raise ProtocolError(f"bad chunk size {size_line[:20]!r}") from None
        if size == 0:
            while _line(stream) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)
        chunk = stream.read(size)
        if len(chunk) != size or _line(stream) not in (b"\r\n", b"\n"):
            raise ProtocolError("chunked body cut short")
        chunks.append(chunk)


_TLS_FAILURES = (
    # (marker in the error text, what it means, where to look); the first match wins
    ("Hostname mismatch", "hostname mismatch", "check the name: --tls-server-name, CONSUL_TLS_SERVER_NAME"),
    ("doesn't match", "hostname mismatch", "check the name: --tls-server-name, CONSUL_TLS_SERVER_NAME"),
    ("CERTIFICATE_VERIFY_FAILED", "certificate verify failed", "check the CA: --ca-file, CONSUL_CACERT"),
    ("WRONG_VERSION_NUMBER", "the address does not speak TLS", "http:// instead of https://?"),
    ("certificate required", "Consul wants a client certificate", "--client-cert/--client-key, CONSUL_CLIENT_CERT/KEY"),
    ("alert", "Consul refused the handshake", "a client certificate signed by its CA? --client-cert, CONSUL_CLIENT_CERT"),
)
_SOCKET_FAILURES = (
    ("Connection refused", "connection refused"), ("Name or service not known", "host name not found (DNS)"),
    ("nodename nor servname", "host name not found (DNS)"), ("Temporary failure in name resolution", "DNS lookup failed"),
    ("No route to host", "no route to host"), ("Network is unreachable", "network unreachable"),
    ("RemoteDisconnected", "Consul closed the connection without answering"),
    ("Connection reset", "connection reset"), ("Connection aborted", "connection aborted"),
)


def connection_failure(exc: BaseException) -> str:
    """Why a request never got an answer, in the operator's words: refused, name not found, TLS, timeout.

    Told by the exception's class names (``ssl.SSLError`` and requests' ``SSLError``, ``TimeoutError``
    and requests' ``Timeout``) so neither ``ssl`` nor ``requests`` is imported to ask.
    """
    text = str(exc)
    kinds = {cls.__name__ for cls in type(exc).__mro__}
    if "SSLError" in kinds:
        for marker, said, hint in _TLS_FAILURES:
            if marker in text:
                detail = text[text.find(marker):].split("(_ssl")[0].rstrip(" )'\"").split("] ", 1)[-1][:160]
                same = detail.lower().startswith(said)
                return f"TLS: {said + detail[len(said):] if same else f'{said} ({detail})'}; {hint}"
        return f"TLS: {text[:200]}"
    if kinds & {"Timeout", "TimeoutError"}:
        return "timed out"
    for marker, said in _SOCKET_FAILURES:
        if marker in text:
            return said
    if isinstance(exc, StaleConnection):
        return "Consul closed the connection without answering"
    return f"{type(exc).__name__}: {text[:200]}"


class ConsulReads:
    """GET requests to one Consul agent, with a timeout on each and typed errors."""

    def __init__(self, scheme: str, host: str, port: int, token: str | None, ca_file: str | None = None,
                 cert: tuple[str, str] | None = None, verify: bool = True, tls_server_name: str | None = None):
        self.scheme = scheme
        self.host = host
        self.port = port
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.address = f"{scheme}://{where}"
        self._host_header = where
        self._token = token
        self._tls = (ca_file, cert, verify)
        self._server_name = tls_server_name or host
        self._local = threading.local()

    def _connect(self, timeout: float) -> _Connection:
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        if self.scheme == "https":
            import ssl  # only for https: it costs several ms of start-up

            ca_file, cert, verify = self._tls
            context = ssl.create_default_context(cafile=ca_file)
            if not verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            if cert is not None:
                context.load_cert_chain(*cert)
            try:
                sock = context.wrap_socket(sock, server_hostname=self._server_name)
            except BaseException:
                sock.close()
                raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _Connection(sock, sock.makefile("rb"))

    def get(self, path: str, params: dict[str, Any], timeout: float, what: str, rule: str) -> Reply:
        """GET ``path`` (``/v1/...``); 404 is an answer (``body`` None), not an error."""
        target = quote(path, safe="/:") + (f"?{urlencode(params)}" if params else "")
        token = f"X-Consul-Token: {self._token}\r\n" if self._token else ""
        request = (f"GET {target} HTTP/1.1\r\nHost: {self._host_header}\r\nUser-Agent: maintenance-agent\r\n"
                   f"Accept: application/json\r\n{token}\r\n").encode()
        try:
            status, headers, raw = self._exchange(request, timeout)
        except ProtocolError as exc:
            raise ConsulUnavailable(f"Consul at {self.address} gave a broken answer to {what}: {exc}", delay=1.0) from None
        except OSError as exc:
            raise ConsulUnavailable(f"Consul at {self.address} unreachable during {what}: {connection_failure(exc)}", delay=1.0) from None
        index = int(headers.get("x-consul-index") or 0)
        text = raw.decode("utf-8", "replace")
        if status == 404:
            return Reply(status, index, None)
        if status == 403:
            raise ConsulPermissionDenied(f"Consul refused {what} (403 {text.strip()[:200]})", rule=rule)
        if status == 429 or status >= 500:  # told by the status code, never by the error text
            raise ConsulUnavailable(f"Consul at {self.address} failed {what}: HTTP {status} {text.strip()[:200]}", delay=1.0)
        if status != 200:
            raise PermanentError(f"Consul at {self.address} refused {what}: {status} {text.strip()[:200]}")
        try:
            return Reply(status, index, json.loads(text))
        except ValueError as exc:
            raise ConsulUnavailable(f"Consul at {self.address} gave a broken answer to {what}: {exc}", delay=1.0) from None

    def _exchange(self, request: bytes, timeout: float) -> tuple[int, dict[str, str], bytes]:
        """One request on this thread's connection; a stale kept-alive connection is replaced once."""
        for attempt in (1, 2):
            conn: _Connection | None = getattr(self._local, "conn", None)
            reused = conn is not None
            if conn is None:
                conn = self._local.conn = self._connect(timeout)
            try:
                conn.sock.settimeout(timeout)
                conn.sock.sendall(request)
                status, headers, body = read_response(conn.stream)
            except (StaleConnection, ConnectionResetError, BrokenPipeError):
                self.close()
                if reused and attempt == 1:
                    continue
                raise
            except BaseException:
                self.close()
                raise
            if headers.get("connection", "").lower() == "close":
                self.close()
            return status, headers, body
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Close this thread's connection (the next request opens a new one)."""
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()
