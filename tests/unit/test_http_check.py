"""The one HTTP check (edge verification and web smoke test) against a real HTTP server on loopback.

Each rule of ``agent.clients.http_check`` — status, body marker, latency, no proxy, no redirect, the charset,
the body bound, timeouts — is shown by an answer that passes it and one that fails it, and the smoke step and
the frontend verifier are shown to give the very same verdict.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from agent.clients.http_check import MAX_BODY, Answer, FrontendVerifier, describe_failure, fetch, run_check
from agent.config.roles import SmokeCheck
from agent.core.errors import StepError
from agent.core.model import Mode
from agent.daemon.steps.smoke import SmokeTestStep
from tests.fixtures.steps import step_context

SLOW_SECONDS = 0.3  # how long /slow takes to answer: what the latency rule is tested with

PAGES: dict[str, tuple[int, str, bytes]] = {  # path -> status, content type, body
    "/ok": (200, "text/plain; charset=utf-8", b"hello marker"),
    "/latin": (200, "text/html; charset=iso-8859-1", "caf\u00e9 ouvert".encode("latin-1")),
    "/no-charset": (200, "text/html", "Gr\u00fc\u00dfe".encode()),
    "/error": (500, "text/plain", b"boom: the database is down"),
    "/empty": (200, "text/plain", b""),
    "/big": (200, "text/plain", b"x" * MAX_BODY + b"marker"),
}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == "/redirect":
            self._answer(302, "text/plain", b"", location="/ok")
        elif path == "/slow":
            time.sleep(SLOW_SECONDS)
            self._answer(200, "text/plain", b"hello marker")
        elif path == "/echo":
            self._answer(200, "text/plain", f"{self.path} {dict(self.headers)}".encode())
        else:
            self._answer(*PAGES.get(path, (404, "text/plain", b"no such page")))

    def _answer(self, status: int, ctype: str, body: bytes, location: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if location:
            self.send_header("Location", location)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, name="http-check-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def check(url: str, **rules: object) -> SmokeCheck:
    return SmokeCheck(name="ui", url=url, **rules)  # type: ignore[arg-type]


CASES = [
    # (why, path, rules, None when it passes / a piece of the failure line)
    ("the expected status and marker", "/ok", {"expect_body": "marker"}, None),
    ("another status", "/error", {}, "ui: GET {url} answered 500, expected 200: 'boom: the database is down'"),
    ("the expected error status", "/error", {"expect_status": 500, "expect_body": "database"}, None),
    ("a marker the body lacks", "/ok", {"expect_body": "goodbye"}, "answered 200 but the body lacks 'goodbye': 'hello marker'"),
    ("an empty body has no marker", "/empty", {"expect_body": "x"}, "the body lacks 'x': ''"),
    ("an empty body without a marker to find", "/empty", {}, None),
    ("the answer's charset", "/latin", {"expect_body": "caf\u00e9"}, None),
    ("UTF-8 when no charset is named", "/no-charset", {"expect_body": "Gr\u00fc\u00dfe"}, None),
    ("a redirect is judged, not followed", "/redirect", {"expect_body": "marker"}, "answered 302, expected 200"),
    ("a redirect that is expected", "/redirect", {"expect_status": 302}, None),
    ("the marker past the body bound", "/big", {"expect_body": "marker"}, "the body lacks 'marker'"),
    ("slower than allowed", "/slow", {"max_latency_seconds": SLOW_SECONDS / 3}, "over the 0.1s limit"),
    ("slow, but within the limit", "/slow", {"max_latency_seconds": 30}, None),
]


@pytest.mark.parametrize(("why", "path", "rules", "failure"), CASES, ids=[c[0] for c in CASES])
def test_each_rule_against_a_real_server(server: str, why: str, path: str, rules: dict[str, object], failure: str | None) -> None:
    url = server + path
    got = run_check(check(url, **rules))
    if failure is None:
        assert got is None, f"{why}: {got}"
    else:
        assert got is not None and failure.format(url=url) in got, f"{why}: {got}"


def test_latency_is_the_whole_exchange_body_included(server: str) -> None:
    answer = fetch(check(server + "/slow"))
    assert answer.status == 200 and answer.elapsed >= SLOW_SECONDS
    whole = fetch(check(server + "/big"))
    assert whole.status == 200 and len(whole.body) == MAX_BODY, "the body is read, up to the bound, within the time measured"


def test_the_configured_headers_and_the_query_are_sent(server: str) -> None:
    answer = fetch(check(server + "/echo?probe=1", headers={"X-Maintenance-Bypass": "staff-secret"}))
    assert "/echo?probe=1" in answer.body and "'X-Maintenance-Bypass': 'staff-secret'" in answer.body


def test_proxy_variables_are_ignored(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A box's HTTP_PROXY must not sit between the agent and its own frontend or UI."""
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    assert run_check(check(server + "/ok", expect_body="marker")) is None


def test_a_refused_connection_fails_with_its_cause() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound but not listening: refused
        got = run_check(check(f"http://127.0.0.1:{port}/"))
    assert got is not None and got.startswith(f"ui: GET http://127.0.0.1:{port}/ failed: ConnectionRefusedError")


def test_a_server_that_never_answers_fails_within_the_timeout() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        started = time.monotonic()
        got = run_check(check(url, timeout_seconds=0.3))
        took = time.monotonic() - started
    assert got is not None and "failed: TimeoutError" in got, got
    assert took < 5.0


def test_describe_failure_is_pure_and_names_the_check_and_the_url() -> None:
    api = SmokeCheck(name="api", url="http://h/api", expect_status=503, expect_body='"status":"maintenance"', max_latency_seconds=1)
    assert describe_failure(api, Answer(503, '{"status":"maintenance"}', 0.1)) is None
    assert describe_failure(api, Answer(200, "ok", 0.1)) == "api: GET http://h/api answered 200, expected 503: 'ok'"
    assert describe_failure(api, Answer(503, "<html>", 0.1)) == "api: GET http://h/api answered 503 but the body lacks '\"status\":\"maintenance\"': '<html>'"
    assert describe_failure(api, Answer(503, '{"status":"maintenance"}', 2.0)) == "api: GET http://h/api took 2.00s, over the 1s limit"
    assert describe_failure(api, Answer(None, "", 0.0, "ConnectionRefusedError: refused")) == "api: GET http://h/api failed: ConnectionRefusedError: refused"
    long = describe_failure(api, Answer(200, "word " * 100, 0.1)) or ""
    assert long.endswith("...'") and len(long) < 200, "a long body is cut to an excerpt"


def test_the_smoke_step_and_the_verifier_give_the_same_verdict(server: str, tmp_path: Path) -> None:
    checks = [check(server + "/ok", expect_body="marker"), check(server + "/error", expect_body="fine")]
    expected = run_check(checks[1])
    assert expected is not None
    assert FrontendVerifier(checks, attempts=1).run_once() == [expected]
    step = SmokeTestStep(checks)
    with pytest.raises(StepError) as err:
        step.revert(step_context(tmp_path / "s.json", Mode.ACTIVE, 43))
    assert str(err.value) == f"smoke-test: {expected}"
    passing = SmokeTestStep(checks[:1])
    ctx = step_context(tmp_path / "s.json", Mode.ACTIVE, 43)
    passing.revert(ctx)
    assert passing.check(ctx, Mode.ACTIVE), "a passed smoke test holds for its intent"
