"""The only code that speaks HAProxy's runtime API (the admin ``stats socket``).

The edge step changes the maintenance map live, without a reload, and reads
it back to detect drift. Everything that can go wrong on the socket becomes a
typed ``HAProxyError`` whose message names what is wrong *and* how to fix it,
because an operator reads it in a status table in the middle of a window.

Map files are plain ``key value`` lines; the values this project writes never
contain whitespace (free text is base64-encoded by the caller), so a map
round-trips exactly through the file and through ``show map``.

HAProxy reads one runtime API request into one buffer (``tune.bufsize``, 16 KiB
by default; 2.6 resets the connection beyond about 15.5 KB), so a new map is
sent as several requests, each below ``MAX_REQUEST_BYTES``.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping
from pathlib import Path

from agent.clients.files import atomic_write
from agent.core.errors import TemporaryError

_SAFE_TOKEN = re.compile(r"^[!-~]+$")  # printable ASCII, no space: one CLI word, one map word
_VERSION = re.compile(r"New version created:\s*(\d+)")
MAX_REQUEST_BYTES = 14 * 1024
"""The longest request line sent to the runtime API: below what a default HAProxy 2.6 accepts, with room to spare."""


class HAProxyError(TemporaryError):
    """HAProxy could not be asked or refused; ``str()`` says what and how to fix it."""


class AdminSocketMissing(HAProxyError):
    """The admin socket does not exist: HAProxy is down or configured without it."""


class AdminSocketDenied(HAProxyError):
    """The agent may not open the admin socket (file mode or group)."""


class HAProxyDown(HAProxyError):
    """The socket file exists but nobody listens (HAProxy stopped, stale socket) or it hung."""


class MapNotLoaded(HAProxyError):
    """The running configuration does not reference the maintenance map."""


class RuntimeCommandFailed(HAProxyError):
    """HAProxy answered a command with an error text."""


def check_token(value: str, what: str) -> str:
    """Refuse a map key or value that would split into several CLI words or map columns."""
    if not _SAFE_TOKEN.match(value) or ";" in value:
        raise ValueError(f"{what} {value!r} must be printable ASCII without spaces or ';'")
    return value


class HAProxyRuntime:
    """A client for one admin socket; one connection per command, each with a timeout.

    HAProxy's non-interactive mode answers one request line and closes the
    connection, so a command never waits on a previous one's leftovers.
    """

    def __init__(self, socket_path: Path, timeout: float = 5.0):
        self.socket_path = Path(socket_path)
        self.timeout = timeout

    def command(self, line: str) -> str:
        """Send one request line (commands may be joined by ';') and return the whole answer."""
        if "\n" in line:
            raise ValueError("a runtime API request is a single line")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            self._connect(sock)
            sock.sendall(line.encode() + b"\n")
            chunks: list[bytes] = []
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
        except TimeoutError:
            raise HAProxyDown(
                f"HAProxy admin socket {self.socket_path} did not answer within {self.timeout:g}s: "
                "is HAProxy overloaded or hung? check `systemctl status haproxy`"
            ) from None
        except OSError as exc:
            raise HAProxyDown(f"HAProxy admin socket {self.socket_path} failed mid-request ({exc.strerror or exc})") from None
        finally:
            sock.close()
        return b"".join(chunks).decode(errors="replace")

    def _connect(self, sock: socket.socket) -> None:
        path = self.socket_path
        try:
            sock.connect(str(path))
        except FileNotFoundError:
            raise AdminSocketMissing(
                f"HAProxy admin socket {path} is missing: is HAProxy running, with "
                f"`stats socket {path} mode 660 level operator group maintenance-agent` in its global section "
                "(deploy/haproxy/haproxy.cfg)?"
            ) from None
        except PermissionError:
            raise AdminSocketDenied(
                f"permission denied on HAProxy admin socket {path}: give the agent's group the socket "
                "(`stats socket ... mode 660 level operator group maintenance-agent` in haproxy.cfg, then reload HAProxy)"
            ) from None
        except ConnectionRefusedError:
            raise HAProxyDown(
                f"HAProxy admin socket {path} exists but nothing listens (HAProxy is down or the socket is stale): "
                "start HAProxy (`systemctl start haproxy`) and check `journalctl -u haproxy`"
            ) from None
        except TimeoutError:
            raise HAProxyDown(f"connecting to HAProxy admin socket {path} timed out after {self.timeout:g}s") from None

    def show_map(self, map_path: Path) -> dict[str, str]:
        """The live content of ``map_path`` as HAProxy holds it in memory."""
        answer = self.command(f"show map {map_path}")
        self._raise_unknown_map(answer, map_path)
        entries: dict[str, str] = {}
        for line in answer.splitlines():
            parts = line.split(" ", 2)
            if len(parts) == 3 and parts[0].startswith("0x"):
                entries[parts[1]] = parts[2]
            elif line.strip():
                raise RuntimeCommandFailed(f"unexpected answer to `show map {map_path}`: {line.strip()!r}")
        return entries

    def replace_map(self, map_path: Path, entries: Mapping[str, str]) -> None:
        """Swap the whole live map for ``entries`` atomically (prepare, add, commit).

        A request sees either the old map or the new one, never a mix of keys,
        and there is no set-vs-add dance because the new version starts empty.
        """
        for key, value in entries.items():
            check_token(key, "map key")
            check_token(value, f"value of map key {key!r}")
        answer = self.command(f"prepare map {map_path}")
        self._raise_unknown_map(answer, map_path)
        found = _VERSION.search(answer)
        if not found:
            raise RuntimeCommandFailed(f"`prepare map {map_path}` answered {answer.strip()!r}")
        version = found.group(1)
        commands = [f"add map @{version} {map_path} {key} {value}" for key, value in entries.items()]
        for request in request_lines(commands):
            answer = self.command(request)
            problems = [line.strip() for line in answer.splitlines() if line.strip()]
            if problems:
                raise RuntimeCommandFailed(f"HAProxy refused the new content of map {map_path}: {'; '.join(problems)}")
        # Only a complete new version is committed; an abandoned one is never seen by requests.
        answer = self.command(f"commit map @{version} {map_path}")
        problems = [line.strip() for line in answer.splitlines() if line.strip()]
        if problems:
            raise RuntimeCommandFailed(f"HAProxy refused to commit map {map_path}: {'; '.join(problems)}")

    @staticmethod
    def _raise_unknown_map(answer: str, map_path: Path) -> None:
        if answer.startswith("Unknown map identifier"):
            raise MapNotLoaded(
                f"the running HAProxy has no map {map_path} loaded: its configuration does not use the maintenance "
                f"fragment with this exact path (deploy/haproxy/maintenance.fragment.cfg); fix the path in the agent's "
                "[edge] map_file or in haproxy.cfg, then reload HAProxy"
            )


def request_lines(commands: list[str], limit: int = MAX_REQUEST_BYTES) -> list[str]:
    """Join ``commands`` with ';' into as few request lines as fit ``limit`` bytes each, in order.

    A single command longer than ``limit`` is refused here with the reason,
    instead of HAProxy resetting the connection half-way through a switch.
    """
    lines: list[str] = []
    current = ""
    for command in commands:
        size = len(command.encode()) + 1
        if size > limit:
            raise RuntimeCommandFailed(
                f"a runtime API command of {size} bytes exceeds the {limit} bytes HAProxy accepts in one request "
                f"({command[:60]}...): shorten [edge] map_file's path or the text"
            )
        if current and len(current.encode()) + 1 + size > limit:
            lines.append(current)
            current = ""
        current = f"{current};{command}" if current else command
    if current:
        lines.append(current)
    return lines


def render_map_file(entries: Mapping[str, str], header: str = "") -> bytes:
    """The map file text for ``entries``: an optional comment, then ``key value`` lines."""
    lines = [f"# {line}" for line in header.splitlines()]
    for key, value in entries.items():
        lines.append(f"{check_token(key, 'map key')} {check_token(value, f'value of map key {key!r}')}")
    return ("\n".join(lines) + "\n").encode()


def read_map_file(path: Path) -> dict[str, str] | None:
    """The entries of the map file, or None when it does not exist."""
    try:
        return parse_map_file(path.read_text())
    except FileNotFoundError:
        return None


def parse_map_file(text: str) -> dict[str, str]:
    """The entries of a map file's text (comments and blanks skipped)."""
    entries: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        entries[key] = value.strip()
    return entries


def write_map_file(path: Path, entries: Mapping[str, str], header: str = "") -> None:
    """Replace the map file atomically so a reload or restart never reads half of it."""
    atomic_write(path, render_map_file(entries, header), mode=0o644)
