"""How to reach Consul: address, token and TLS, with the ``consul`` command line's environment variables.

Operators already set ``CONSUL_HTTP_ADDR``, ``CONSUL_CACERT`` and friends for
the ``consul`` command; ``maintctl`` and the agent read the same variables with
the same meaning, so one shell (or one systemd ``Environment=``) serves all
three. What is given explicitly (a flag, a config key) wins over the
environment; the environment wins over the defaults. Every bad value is
refused with one line naming the flag, key or variable it came from.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit


def host_port(value: str, what: str) -> str:
    """``value`` if it is ``host:port`` with a valid IP address or host name (here, not in ``fields``: maintctl reads it without pydantic)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"expected {what} as host:port (e.g. 127.0.0.1:9464)")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        labels = host.split(".")
        if all(label.isdigit() for label in labels):
            raise ValueError(f"{host!r} is not a valid IP address") from None
        if not all(label and label.replace("-", "").isalnum() for label in labels):
            raise ValueError(f"{host!r} is neither an IP address nor a host name") from None
    return value


DEFAULT_ADDRESS = "http://127.0.0.1:8500"

# name -> what it means, shown in maintctl --help and the docs
ENVIRONMENT = {
    "CONSUL_HTTP_ADDR": "Consul's HTTP(S) address, e.g. https://consul.internal:8501",
    "CONSUL_HTTP_TOKEN": "ACL token",
    "CONSUL_HTTP_TOKEN_FILE": "file holding the ACL token",
    "CONSUL_HTTP_SSL": "true: https when the address names no scheme",
    "CONSUL_HTTP_SSL_VERIFY": "false: do not verify Consul's certificate",
    "CONSUL_CACERT": "CA certificate (PEM) that signed Consul's certificate",
    "CONSUL_CLIENT_CERT": "client certificate (PEM) when Consul verifies clients",
    "CONSUL_CLIENT_KEY": "the client certificate's key (PEM)",
    "CONSUL_TLS_SERVER_NAME": "name Consul's certificate must carry, if not the host",
}

_TRUE = ("1", "true", "yes", "on", "t")
_FALSE = ("0", "false", "no", "off", "f")


class ConnectionSettingError(ValueError):
    """One bad connection setting; the message names where it came from."""


def token_problem(token: str) -> str | None:
    """What keeps ``token`` out of an ``X-Consul-Token`` header, or None.

    A CR or LF would end the header and start one of the token's making; any
    other control character, a space or a non-ASCII character is no token
    either (Consul's are UUIDs). Checked when the token is resolved, before
    any request is sent, and again by the transport that sends it.
    """
    if "\r" in token or "\n" in token:
        return "contains a line break (CR or LF); a token is one line"
    odd = next((c for c in token if not "!" <= c <= "~"), None)
    if odd is not None:
        return f"contains {odd!r} (U+{ord(odd):04X}); a token is printable ASCII without spaces"
    return None


def normalise_address(value: str, https: bool = False) -> str:
    """``scheme://host:port`` from what an operator types (``127.0.0.1:8500``, ``https://consul:8501``)."""
    text = value.strip()
    if not text:
        raise ValueError("empty; expected an address like http://127.0.0.1:8500")
    parts = urlsplit(text if "://" in text else f"{'https' if https else 'http'}://{text}")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") or parts.query:
        raise ValueError(f"{value!r} is not an address like http(s)://host:port (e.g. http://127.0.0.1:8500)")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{value!r} has no valid port: expected a number between 1 and 65535") from None
    port = port or (8501 if parts.scheme == "https" else 8500)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    try:
        host_port(f"{host}:{port}", "the Consul address")
    except ValueError as exc:
        raise ValueError(f"{value!r}: {exc}") from None
    return f"{parts.scheme}://{host}:{port}"


def parse_bool(value: str) -> bool:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{value!r} is not true or false")


@dataclass(frozen=True)
class ConsulConnection:
    """Everything needed to open a connection to Consul, resolved."""

    address: str = DEFAULT_ADDRESS
    token: str | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    tls_server_name: str | None = None
    verify: bool = True


CONFIG_KEYS = {f: f"consul.{f}" for f in ("address", "token", "token_file", "ca_file", "cert_file", "key_file")}


@dataclass(frozen=True)
class _Sources:
    """Where each setting may come from: an explicit value (named by ``names`` in errors), else a ``CONSUL_*`` variable."""

    env: Mapping[str, str]
    names: Mapping[str, str]

    def pick(self, value: str | Path | None, field: str, variable: str) -> tuple[str | None, str]:
        if value:
            return str(value), self.names[field]
        return self.env.get(variable) or None, variable

    def flag(self, variable: str) -> bool | None:
        raw = self.env.get(variable) or None
        if raw is None:
            return None
        try:
            return parse_bool(raw)
        except ValueError as exc:
            raise ConnectionSettingError(f"{variable}: {exc}") from None

    def pem(self, value: Path | None, field: str, variable: str) -> Path | None:
        path, origin = self.pick(value, field, variable)
        if path is not None and not Path(path).is_file():
            raise ConnectionSettingError(f"{origin}: {path} does not exist or is not a file")
        return Path(path) if path else None

    def address(self, address: str | None) -> str:
        raw, origin = self.pick(address, "address", "CONSUL_HTTP_ADDR")
        try:
            return normalise_address(raw, https=bool(self.flag("CONSUL_HTTP_SSL"))) if raw else DEFAULT_ADDRESS
        except ValueError as exc:
            raise ConnectionSettingError(f"{origin}: {exc}") from None

    def token(self, token: str | None, token_file: Path | None) -> str | None:
        resolved, origin = token or None, self.names["token"]
        if resolved is None:
            path, origin = self.pick(token_file, "token_file", "CONSUL_HTTP_TOKEN_FILE")
            resolved = _read_token(Path(path), origin) if path else (self.env.get("CONSUL_HTTP_TOKEN") or None)
            origin = f"{origin} ({path})" if path else "CONSUL_HTTP_TOKEN"
        problem = token_problem(resolved) if resolved else None
        if problem:
            raise ConnectionSettingError(f"{origin}: the token {problem}")
        return resolved


def resolve(
    *,
    address: str | None = None,
    token: str | None = None,
    token_file: Path | None = None,
    ca_file: Path | None = None,
    cert_file: Path | None = None,
    key_file: Path | None = None,
    tls_server_name: str | None = None,
    verify: bool | None = None,
    environ: Mapping[str, str] | None = None,
    names: Mapping[str, str] = CONFIG_KEYS,
) -> ConsulConnection:
    """Explicit values first, then the ``CONSUL_*`` variables, then the defaults.

    ``names`` spells where an explicit value came from in an error (maintctl's
    flags, or the config file's keys). Raises ``ConnectionSettingError`` with
    one line for the first bad value.
    """
    sources = _Sources(os.environ if environ is None else environ, names)
    resolved_address = sources.address(address)
    resolved_token = sources.token(token, token_file)
    ca = sources.pem(ca_file, "ca_file", "CONSUL_CACERT")
    cert = sources.pem(cert_file, "cert_file", "CONSUL_CLIENT_CERT")
    key = sources.pem(key_file, "key_file", "CONSUL_CLIENT_KEY")
    if (cert is None) != (key is None):
        raise ConnectionSettingError(f"a client certificate and its key go together: give both {names['cert_file']} and {names['key_file']} "
                                     "(or CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY)")
    env_verify = sources.flag("CONSUL_HTTP_SSL_VERIFY")
    resolved_verify = verify if verify is not None else (env_verify if env_verify is not None else True)
    return ConsulConnection(address=resolved_address, token=resolved_token, ca_file=ca, cert_file=cert, key_file=key,
                            tls_server_name=tls_server_name or sources.env.get("CONSUL_TLS_SERVER_NAME") or None, verify=resolved_verify)


def _read_token(path: Path, where: str) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError as exc:
        raise ConnectionSettingError(f"{where}: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConnectionSettingError(f"{where}: {path} is not a text file holding a token") from None


FLAG_NAMES = {"address": "--consul", "token": "--token", "token_file": "--token-file", "ca_file": "--ca-file", "cert_file": "--client-cert",
              "key_file": "--client-key"}
"""How maintctl spells each setting in an error."""
