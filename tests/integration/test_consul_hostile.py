"""The Consul transport against malformed and hostile answers, from a real socket server on 127.0.0.1.

Each answer here is bytes a test server writes (``tests.fixtures.raw_http``),
not a mock: the gateway and ``maintctl`` talk real HTTP over a real socket. A
malformed answer (a bad length, a bad index header, a close in the middle, a
1xx, an oversized body, not HTTP at all) must become the core's typed error,
reported as Consul's broken answer; an answer announcing gigabytes is refused
at once; every wait has its deadline; a token a header cannot carry is
refused before anything is sent.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.clients.consul import ConsulGateway
from agent.clients.consul_transport import MAX_BODY
from agent.config.connection import ConnectionSettingError, resolve
from agent.core.errors import ConsulUnavailable
from tests.fixtures.raw_http import RawHttpServer, Reply, Request, answer
from tests.fixtures.scripts import run_script

KEY = "maintenance/t/desired"
ENTRY = b'[{"Key":"maintenance/t/desired","Value":"b24=","ModifyIndex":5,"CreateIndex":5,"Flags":0,"LockIndex":0}]'


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[Request], Reply]], RawHttpServer]]:
    started: list[RawHttpServer] = []

    def start(script: Callable[[Request], Reply]) -> RawHttpServer:
        server = RawHttpServer(script).start()
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


def broken(server: RawHttpServer, call: Callable[[ConsulGateway], object] = lambda g: g.get_key(KEY),
           timeout: float = 2.0) -> ConsulUnavailable:
    with pytest.raises(ConsulUnavailable) as raised:
        call(ConsulGateway(server.address, request_timeout=timeout))
    return raised.value


def head(status_line: bytes, *headers: bytes) -> bytes:
    return status_line + b"\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n"


@pytest.mark.parametrize(("raw", "said"), [
    (head(b"HTTP/1.1 200 OK", b"Content-Length: abc") + ENTRY, "bad Content-Length 'abc'"),
    (head(b"HTTP/1.1 200 OK", b"Content-Length: -1") + ENTRY, "bad Content-Length '-1'"),
    (head(b"HTTP/1.1 200 OK", b"Content-Length: 1_0") + ENTRY, "bad Content-Length '1_0'"),
    (head(b"HTTP/1.1 200 OK", b"Content-Length: +2") + ENTRY, "bad Content-Length '+2'"),
    (head(b"HTTP/1.1 200 OK", b"Content-Length: 5", b"Content-Length: 6") + ENTRY, "bad Content-Length '5, 6'"),
    (head(b"HTTP/1.1 200 OK", b"Content-Length: 5", b"Transfer-Encoding: chunked") + b"5\r\n[1,2]\r\n0\r\n\r\n", "ambiguous"),
    (head(b"HTTP/1.1 200 OK", b"Transfer-Encoding: gzip") + ENTRY, "Transfer-Encoding 'gzip'"),
    (head(b"HTTP/1.1 200 OK", b"X-Consul-Index: abc", b"Content-Length: %d" % len(ENTRY)) + ENTRY, "bad X-Consul-Index 'abc'"),
    (head(b"HTTP/1.1 200 OK", b"X-Consul-Index: -5", b"Content-Length: %d" % len(ENTRY)) + ENTRY, "bad X-Consul-Index '-5'"),
    (head(b"HTTP/1.1 200 OK", b"X-Consul-Index: 18446744073709551616", b"Content-Length: %d" % len(ENTRY)) + ENTRY,
     "bad X-Consul-Index '18446744073709551616'"),
    (head(b"HTTP/1.1 200 OK", b"X-Consul-Index: 5", b"X-Consul-Index: 6", b"Content-Length: %d" % len(ENTRY)) + ENTRY,
     "bad X-Consul-Index '5, 6'"),
    (head(b"HTTP/1.1 200 OK", b"Content-Length: 100") + ENTRY[:10], "answer cut short: 10 of 100 bytes"),
    (head(b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked") + b"40\r\n" + ENTRY[:10], "answer cut short"),
    (head(b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked") + b"zz\r\n" + ENTRY, "answer cut short"),
    (head(b"HTTP/1.1 102 Processing"), "HTTP 102 (an interim answer) where the answer belongs"),
    (head(b"HTTP/1.1 103 Early Hints", b"Link: </x>") + head(b"HTTP/1.1 200 OK", b"Content-Length: 2") + b"[]", "HTTP 103"),
    (b"SSH-2.0-OpenSSH_9.2\r\n", "not an HTTP answer"),
    (head(b"HTTP/1.1 200 OK", b"Content-Length: 9") + b"not json!", "not JSON"),
])
def test_a_malformed_answer_is_consuls_broken_answer(serve: Callable[..., RawHttpServer], raw: bytes, said: str) -> None:
    server = serve(lambda request: Reply(raw))
    failure = broken(server)
    assert f"Consul at {server.address} gave a broken answer to read of {KEY}: " in str(failure)
    assert said in str(failure)


def test_a_close_before_any_answer_is_unreachable_and_valid_interim_answers_are_skipped(serve: Callable[..., RawHttpServer]) -> None:
    server = serve(lambda request: Reply(b""))
    assert str(broken(server)).endswith("unreachable during read of maintenance/t/desired: Consul closed the connection without answering")
    continued = serve(lambda request: Reply(head(b"HTTP/1.1 100 Continue") + answer(200, ENTRY, {"X-Consul-Index": "9"}).data))
    read = ConsulGateway(continued.address, request_timeout=2.0).get_key(KEY)
    assert (read.value, read.index, read.modify_index) == (b"on", 9, 5)


def test_an_answer_announcing_gigabytes_is_refused_before_its_body_is_read(serve: Callable[..., RawHttpServer]) -> None:
    # The body trickles in after the headers: reading it would take minutes.
    server = serve(lambda request: Reply(head(b"HTTP/1.1 200 OK", b"Content-Length: 5000000000"), pieces=[b"[" + b" " * 65536] * 100,
                                         pause=0.5))
    started = time.monotonic()
    failure = broken(server, timeout=30.0)
    assert time.monotonic() - started < 5.0
    assert "an answer of 5000000000 bytes announced, over the 16777216 this client reads" in str(failure)


def test_a_streamed_answer_longer_than_the_bound_is_cut_at_the_bound(serve: Callable[..., RawHttpServer]) -> None:
    chunk = b"%x\r\n" % (1 << 20) + b" " * (1 << 20) + b"\r\n"
    pieces = [chunk] * (MAX_BODY // (1 << 20) + 2) + [b"0\r\n\r\n"]
    server = serve(lambda request: Reply(head(b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked"), pieces=pieces))
    assert f"an answer of more than {MAX_BODY} bytes" in str(broken(server, timeout=30.0))


def test_an_answer_that_trickles_in_ends_at_its_deadline(serve: Callable[..., RawHttpServer]) -> None:
    # Every byte comes within the socket timeout; only a deadline on the whole answer ends it.
    server = serve(lambda request: Reply(head(b"HTTP/1.1 200 OK", b"Content-Length: 1000"), pieces=[b" "] * 1000, pause=0.1))
    started = time.monotonic()
    failure = broken(server, timeout=1.0)
    elapsed = time.monotonic() - started
    assert "timed out" in str(failure) and 0.9 <= elapsed < 3.0, (elapsed, failure)


def test_a_silent_consul_costs_a_read_its_timeout_and_a_blocking_query_its_wait_and_jitter(serve: Callable[..., RawHttpServer]) -> None:
    server = serve(lambda request: Reply(hold=True))
    started = time.monotonic()
    assert "timed out" in str(broken(server, timeout=0.5))
    assert 0.4 <= time.monotonic() - started < 2.5
    started = time.monotonic()
    assert "timed out" in str(broken(server, lambda g: g.get_key(KEY, index=5, wait=1), timeout=0.5))
    assert 2.4 <= time.monotonic() - started < 5.0  # wait 1 s + max(1/15, 1) s of jitter + the 0.5 s request timeout


def test_a_connect_waits_the_request_timeout_not_a_blocking_querys_wait() -> None:
    # A listener whose accept queue is full: the kernel drops further SYNs, so a connect hangs.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers: list[socket.socket] = []
    try:
        for _ in range(8):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(listener.getsockname())
            fillers.append(filler)
        time.sleep(0.2)
        gateway = ConsulGateway(f"http://127.0.0.1:{listener.getsockname()[1]}", request_timeout=1.0)
        started = time.monotonic()
        with pytest.raises(ConsulUnavailable, match="timed out"):
            gateway.get_key(KEY, index=5, wait=60)  # its answer could take 65 s; the connect may take 1 s
        assert time.monotonic() - started < 4.0
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def test_a_kept_alive_connection_consul_closed_is_replaced_before_a_write(serve: Callable[..., RawHttpServer]) -> None:
    def script(request: Request) -> Reply:
        if request.method == "GET":  # an answer that does not say the connection closes after it, and then it does
            return Reply(answer(200, ENTRY, {"X-Consul-Index": "5"}, keep_open=True).data, keep_open=False)
        return answer(200, b"true", keep_open=True)

    server = serve(script)
    gateway = ConsulGateway(server.address, request_timeout=2.0)
    assert gateway.get_key(KEY).value == b"on"
    time.sleep(0.2)
    assert gateway.put_key(KEY, "off", cas=5) is True  # not "Consul closed the connection"
    assert [r.method for r in server.requests] == ["GET", "PUT"] and server.connections == 2
    assert gateway.put_key(KEY, "on", cas=6) is True
    assert server.connections == 2, "a connection Consul keeps open is reused"


def test_the_token_given_is_the_one_sent_on_every_call_whatever_the_environment(serve: Callable[..., RawHttpServer],
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "from-the-environment")  # py-consul would send this one over the gateway's

    def script(request: Request) -> Reply:
        if request.target.startswith("/v1/txn"):
            return answer(200, b'{"Results": [{"KV": {"Key": "k", "ModifyIndex": 3, "Value": null}}]}')
        return answer(200, b"true" if request.method == "PUT" else ENTRY, {"X-Consul-Index": "5"})

    server = serve(script)
    gateway = ConsulGateway(server.address, token="the-gateways", request_timeout=2.0)
    gateway.get_key(KEY)
    gateway.put_key(KEY, "on")
    gateway.read_keys(["k"])
    gateway.set_node_maintenance(True, "patch")
    assert [r.headers.get("x-consul-token") for r in server.requests] == ["the-gateways"] * 4
    ConsulGateway(server.address, request_timeout=2.0).put_key(KEY, "on")
    assert "x-consul-token" not in server.requests[-1].headers


@pytest.mark.parametrize("token", ["abc\r\nX-Injected: 1", "abc\ndef", "abc\rdef", "abc def", "t\u00f6ken"])
def test_a_token_a_header_cannot_carry_is_refused_before_anything_is_sent(serve: Callable[..., RawHttpServer], tmp_path: Path,
                                                                          token: str) -> None:
    server = serve(lambda request: answer(200, ENTRY))
    with pytest.raises(ValueError, match="the Consul token contains"):
        ConsulGateway(server.address, token=token)
    with pytest.raises(ConnectionSettingError, match="^--token: the token contains"):
        resolve(token=token, names={"token": "--token", "address": "--consul", "token_file": "--token-file"}, environ={})
    with pytest.raises(ConnectionSettingError, match="^CONSUL_HTTP_TOKEN: the token contains"):
        resolve(environ={"CONSUL_HTTP_TOKEN": token})
    done = run_script("maintctl", "--consul", server.address, "--env", "t", "--token", token, "status")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("maintctl: error: --token: the token contains") and len(done.stderr.strip().splitlines()) == 1
    assert server.connections == 0, "nothing may reach Consul with that token"


def test_a_token_file_with_a_line_break_inside_is_refused_naming_the_file(serve: Callable[..., RawHttpServer], tmp_path: Path) -> None:
    server = serve(lambda request: answer(200, ENTRY))
    token_file = tmp_path / "token"
    token_file.write_text("first-line\nX-Injected: 1\n")
    done = run_script("maintctl", "--consul", server.address, "--env", "t", "--token-file", str(token_file), "status")
    assert done.returncode == 2
    assert done.stderr.strip() == (f"maintctl: error: --token-file ({token_file}): the token contains a line break (CR or LF); "
                                   "a token is one line")
    assert server.connections == 0


@pytest.mark.parametrize("raw", [
    head(b"HTTP/1.1 200 OK", b"Content-Length: 5000000000"),
    head(b"HTTP/1.1 200 OK", b"Content-Length: 12", b"X-Consul-Index: 12abc") + b"[          ]",
    head(b"HTTP/1.1 101 Switching Protocols", b"Upgrade: websocket"),
])
def test_maintctl_reports_consuls_broken_answer_in_one_line_and_at_once(serve: Callable[..., RawHttpServer], raw: bytes) -> None:
    server = serve(lambda request: Reply(raw, pieces=[b" " * 65536] * 50, pause=0.5))
    started = time.monotonic()
    done = run_script("maintctl", "--consul", server.address, "--env", "t", "status")
    assert time.monotonic() - started < 15.0  # a Python start-up or two, not a minute of reading
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"maintctl: error: Consul at {server.address} gave a broken answer to "), line
    assert "a bug" not in line
