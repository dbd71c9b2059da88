"""ConsulGateway tells a retryable failure by the HTTP status code, not by the error text.

A small HTTP server on loopback answers like Consul would (or would not); the
gateway talks real HTTP to it (reads through its socket reader).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agent.clients.consul import ConsulGateway
from agent.core.errors import ConsulPermissionDenied, ConsulUnavailable, PermanentError


class Scripted(ThreadingHTTPServer):
    status = 200
    body = b"[]"
    headers = {"X-Consul-Index": "7"}


class Handler(BaseHTTPRequestHandler):
    server: Scripted

    def do_GET(self) -> None:
        self.send_response(self.server.status)
        for name, value in self.server.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(self.server.body)))
        self.end_headers()
        self.wfile.write(self.server.body)

    do_PUT = do_GET  # noqa: N815

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[Scripted]:
    httpd = Scripted(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.mark.parametrize(("status", "body", "error", "text"), [
    (500, b"rpc error making call: No cluster leader", ConsulUnavailable, "HTTP 500 rpc error"),
    (500, b"something Consul never said before", ConsulUnavailable, "HTTP 500 something"),
    (503, b"", ConsulUnavailable, "HTTP 503"),
    (429, b"Your IP is issuing too many concurrent connections", ConsulUnavailable, "HTTP 429"),
    (400, b"rpc error: bad filter", PermanentError, "400 rpc error: bad filter"),  # the text does not make it retryable
    (405, b"method not allowed", PermanentError, "405"),
    (403, b"Permission denied", ConsulPermissionDenied, "needs ACL rule"),
    (200, b"not json", ConsulUnavailable, "broken answer"),
])
def test_status_decides_the_error(server: Scripted, status: int, body: bytes, error: type[Exception], text: str) -> None:
    server.status, server.body = status, body
    gateway = ConsulGateway(f"http://127.0.0.1:{server.server_address[1]}", request_timeout=2.0)
    with pytest.raises(error, match=text) as raised:
        gateway.get_key("maintenance/t/desired")
    assert not isinstance(raised.value, ConsulUnavailable) or error is ConsulUnavailable


def test_a_missing_key_is_no_error(server: Scripted) -> None:
    server.status, server.body = 404, b""
    gateway = ConsulGateway(f"http://127.0.0.1:{server.server_address[1]}", request_timeout=2.0)
    read = gateway.get_key("maintenance/t/desired")
    assert not read.exists and read.index == 7
