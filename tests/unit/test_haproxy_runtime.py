"""HAProxyRuntime against a scripted unix socket server, and the map file helpers."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.clients.haproxy import (
    MAX_REQUEST_BYTES,
    AdminSocketDenied,
    AdminSocketMissing,
    HAProxyDown,
    HAProxyRuntime,
    MapNotLoaded,
    RuntimeCommandFailed,
    check_token,
    parse_map_file,
    read_map_file,
    render_map_file,
    write_map_file,
)


class ScriptedSocket:
    """Answers each request line with ``reply(line)``, like HAProxy's non-interactive mode."""

    def __init__(self, path: Path, reply: Callable[[str], str]):
        self.path = path
        self.reply = reply
        self.requests: list[str] = []
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(str(path))
        self.server.listen(8)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                line = data.decode().rstrip("\n")
                self.requests.append(line)
                answer = self.reply(line)
                if answer is not None:
                    conn.sendall(answer.encode())

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    return tmp_path / "admin.sock"


@pytest.fixture
def scripted(sock_path: Path) -> Iterator[Callable[[Callable[[str], str]], ScriptedSocket]]:
    servers: list[ScriptedSocket] = []

    def make(reply: Callable[[str], str]) -> ScriptedSocket:
        servers.append(ScriptedSocket(sock_path, reply))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def test_show_map_parses_entries(sock_path: Path, scripted) -> None:
    scripted(lambda line: "0x55 state on\n0x56 message Hello%20there\n\n")
    assert HAProxyRuntime(sock_path).show_map(Path("/m.map")) == {"state": "on", "message": "Hello%20there"}


def test_unknown_map_is_map_not_loaded(sock_path: Path, scripted) -> None:
    scripted(lambda line: "Unknown map identifier. Please use #<id> or <file>.\n\n")
    with pytest.raises(MapNotLoaded, match="has no map /m.map loaded.*reload HAProxy"):
        HAProxyRuntime(sock_path).show_map(Path("/m.map"))


def test_unexpected_show_map_answer_is_an_error(sock_path: Path, scripted) -> None:
    scripted(lambda line: "Permission denied\n\n")
    with pytest.raises(RuntimeCommandFailed, match="Permission denied"):
        HAProxyRuntime(sock_path).show_map(Path("/m.map"))


def test_replace_map_prepares_adds_and_commits(sock_path: Path, scripted) -> None:
    server = scripted(lambda line: "New version created: 7\n\n" if line.startswith("prepare") else "\n" * 4)
    HAProxyRuntime(sock_path).replace_map(Path("/m.map"), {"message": "a%20b", "state": "on"})
    assert server.requests == [
        "prepare map /m.map",
        "add map @7 /m.map message a%20b;add map @7 /m.map state on",
        "commit map @7 /m.map",
    ]


def test_replace_map_splits_long_values_over_requests_haproxy_accepts(sock_path: Path, scripted) -> None:
    server = scripted(lambda line: "New version created: 3\n\n" if line.startswith("prepare") else "\n")
    entries = {"a": "x" * 9000, "b": "y" * 9000, "c": "1", "state": "on"}
    HAProxyRuntime(sock_path).replace_map(Path("/m.map"), entries)
    assert all(len(line) + 1 <= MAX_REQUEST_BYTES for line in server.requests)
    assert server.requests[1] == f"add map @3 /m.map a {'x' * 9000}"
    assert server.requests[2] == f"add map @3 /m.map b {'y' * 9000};add map @3 /m.map c 1;add map @3 /m.map state on"
    assert server.requests[-1] == "commit map @3 /m.map"


def test_a_command_longer_than_a_request_is_refused_before_sending(sock_path: Path, scripted) -> None:
    server = scripted(lambda line: "New version created: 3\n\n" if line.startswith("prepare") else "\n")
    with pytest.raises(RuntimeCommandFailed, match="exceeds the 14336 bytes HAProxy accepts"):
        HAProxyRuntime(sock_path).replace_map(Path("/m.map"), {"a": "x" * MAX_REQUEST_BYTES})
    assert not any(line.startswith(("add", "commit")) for line in server.requests)


def test_replace_map_reports_refusals(sock_path: Path, scripted) -> None:
    scripted(lambda line: "New version created: 1\n\n" if line.startswith("prepare") else "\nout of memory\n\n")
    with pytest.raises(RuntimeCommandFailed, match="refused the new content.*out of memory"):
        HAProxyRuntime(sock_path).replace_map(Path("/m.map"), {"state": "on"})


def test_replace_map_refuses_values_with_spaces_before_talking(sock_path: Path) -> None:
    with pytest.raises(ValueError, match="without spaces"):
        HAProxyRuntime(sock_path).replace_map(Path("/m.map"), {"message": "two words"})


def test_missing_socket(sock_path: Path) -> None:
    with pytest.raises(AdminSocketMissing, match=f"{sock_path} is missing.*stats socket {sock_path} mode 660 level operator group maintenance-agent"):
        HAProxyRuntime(sock_path).command("show info")


def test_stale_socket_means_haproxy_down(sock_path: Path) -> None:
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock_path))  # bound, never listening: what a dead HAProxy leaves behind
    try:
        with pytest.raises(HAProxyDown, match="exists but nothing listens"):
            HAProxyRuntime(sock_path).command("show info")
    finally:
        stale.close()


def test_silent_haproxy_times_out(sock_path: Path) -> None:
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(sock_path))
    listener.listen(1)  # accepts in the backlog, never answers
    try:
        with pytest.raises(HAProxyDown, match="did not answer within 0.2s"):
            HAProxyRuntime(sock_path, timeout=0.2).command("show info")
    finally:
        listener.close()


def test_permission_denied_says_how_to_fix(sock_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests run as root, which no file mode stops; emulate the kernel's answer.
    def refuse(self: socket.socket, address: str) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    with pytest.raises(AdminSocketDenied, match="permission denied on HAProxy admin socket.*group"):
        HAProxyRuntime(sock_path).command("show info")


def test_multi_line_request_is_refused(sock_path: Path) -> None:
    with pytest.raises(ValueError):
        HAProxyRuntime(sock_path).command("show info\nshutdown frontend public")


@pytest.mark.parametrize("bad", ["", "two words", "semi;colon", "new\nline", "tab\there", "caf\u00e9"])
def test_check_token_refuses_what_would_split(bad: str) -> None:
    with pytest.raises(ValueError):
        check_token(bad, "value")


MAP_KEY_CHARS = "abcdefghijklmnopqrstuvwxyz_"
MAP_VALUE_CHARS = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != ";")  # printable, no space, no ';'


@given(st.dictionaries(st.text(alphabet=MAP_KEY_CHARS, min_size=1, max_size=12), st.text(alphabet=MAP_VALUE_CHARS, min_size=1, max_size=40)))
def test_map_file_round_trips(entries: dict[str, str]) -> None:
    # The text only: writing it (atomic, fsynced) is test_write_and_read_map_file's job.
    assert parse_map_file(render_map_file(entries, header="two\nlines").decode()) == entries


def test_write_and_read_map_file(tmp_path: Path) -> None:
    path = tmp_path / "m" / "maintenance.map"
    assert read_map_file(path) is None
    write_map_file(path, {"state": "on", "retry_min": "60"}, header="by the agent")
    assert path.read_text().startswith("# by the agent\n")
    assert read_map_file(path) == {"state": "on", "retry_min": "60"}
    assert oct(path.stat().st_mode & 0o777) == "0o644"  # HAProxy (user haproxy) must read it on reload
