"""The base model and the field validators every config table shares."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
)

from agent.config.connection import host_port

__all__ = ["FrozenModel", "HttpUrlText", "host_port"]


class FrozenModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an http(s) URL")
    return value


HttpUrlText = Annotated[str, AfterValidator(_http_url)]
"""An http(s) URL kept as the text the operator wrote."""
