"""The base model and the field validators every config table shares."""

from __future__ import annotations

import ipaddress
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
)


class FrozenModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def host_port(value: str, what: str) -> str:
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


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an http(s) URL")
    return value


HttpUrlText = Annotated[str, AfterValidator(_http_url)]
"""An http(s) URL kept as the text the operator wrote."""
