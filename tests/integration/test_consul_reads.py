"""The gateway's reads against real Consul (a prefix sent chunked, a missing key, a blocking read), and against answers cut short or malformed."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from agent.clients.consul import ConsulGateway
from agent.core.errors import ConsulUnavailable
from demo.harness.consul import ConsulAgentProcess


def test_large_prefix_chunked_missing_key_and_blocking_read(consul_server: ConsulAgentProcess, environment: str) -> None:
    gateway = ConsulGateway(consul_server.address)
    values = {f"maintenance/{environment}/big/{i:03d}": ("x" * 3000 + str(i)) for i in range(40)}  # ~120 KB: sent chunked
    for key, value in values.items():
        consul_server.kv_put(key, value)
    index, read = gateway.read_prefix(f"maintenance/{environment}/big/")
    assert {k: r.value.decode() for k, r in read.items()} == values
    assert gateway.get_key(f"maintenance/{environment}/missing").exists is False
    one = gateway.get_key(f"maintenance/{environment}/big/007", consistent=True)
    assert one.value == values[f"maintenance/{environment}/big/007"].encode()
    consul_server.kv_put(f"maintenance/{environment}/empty", b"")
    assert gateway.get_key(f"maintenance/{environment}/empty").value == b""
    # A blocking read returns when the key changes; the connection is reused across all of these.
    changed = threading.Timer(0.3, consul_server.kv_put, (f"maintenance/{environment}/big/001", "changed"))
    changed.start()
    after = gateway.get_key(f"maintenance/{environment}/big/001", index=one.index, wait=10)
    changed.join()
    assert after.value == b"changed"


@pytest.fixture
def broken_server(request: pytest.FixtureRequest) -> Iterator[str]:
    """A loopback server that answers every connection with ``request.param`` bytes and closes it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.1)  # accept() wakes up to see ``stop``
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)
            with conn:
                conn.recv(65536)
                conn.sendall(request.param)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


@pytest.mark.parametrize("broken_server", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n[{\"Key\"",                 # cut inside the body
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n[{\"Key\"",   # cut inside a chunk
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nnope!",                     # not JSON
    b"SSH-2.0-OpenSSH_9.2\r\n",                                               # not HTTP
    b"",                                                                      # closed without a word
], indirect=True)
def test_broken_answers_are_retryable_errors(broken_server: str) -> None:
    with pytest.raises(ConsulUnavailable):
        ConsulGateway(broken_server, request_timeout=2).get_key("maintenance/x/desired")


def test_nothing_listening_is_unreachable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConsulUnavailable, match="unreachable"):
        ConsulGateway(f"http://127.0.0.1:{port}", request_timeout=2).get_key("maintenance/x/desired")
