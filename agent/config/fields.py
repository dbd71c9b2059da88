"""The base model and the field validators every config table shares."""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
)

from agent.config.connection import host_port

__all__ = ["BoxPath", "FrozenModel", "HttpUrlText", "host_port"]


class FrozenModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an http(s) URL")
    return value


HttpUrlText = Annotated[str, AfterValidator(_http_url)]
"""An http(s) URL kept as the text the operator wrote."""


_BOX_PATH = re.compile(r"/[A-Za-z0-9_.@:+/-]*")


def _box_path(value: Path) -> Path:
    text = str(value)
    if not _BOX_PATH.fullmatch(text) or posixpath.normpath(text) != text:
        raise ValueError("expected an absolute, normalised path of letters, digits and _ . @ : + - (it is written into "
                         "systemd unit files, where a relative path, '..', '%' or a line break would change its meaning)")
    return value


BoxPath = Annotated[Path, AfterValidator(_box_path)]
"""A path on the box that also goes into the unit files ``install-files`` writes (a state directory, the HAProxy map)."""
