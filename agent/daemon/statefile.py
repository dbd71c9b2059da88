"""The box's local memory: a small JSON file in ``state_dir``, written atomically.

It keeps what must survive an agent restart: the machine state and intent
index the box acted on, the Consul session it held, and each step's notes
(for example which services ran before maintenance, so leaving restores
exactly those). Writes go to a temp file, fsync, rename, fsync the directory,
so a crash leaves either the old or the new file, never half of one.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from agent.clients.files import atomic_write


class StateFile:
    """A JSON document of named sections, saved whole on every change.

    Thread-safe; sections are plain JSON values owned by one writer each
    (``machine``, ``session``, ``step:<name>``).
    """

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._doc: dict[str, Any] = self._read()

    def _read(self) -> dict[str, Any]:
        try:
            doc = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            # A corrupt file must not be silently forgotten: it may hold the
            # list of services to restart. Keep it aside and say so loudly.
            aside = self.path.with_suffix(".corrupt")
            os.replace(self.path, aside)
            raise RuntimeError(f"state file {self.path} is not valid JSON ({exc}); moved to {aside}") from None
        return doc if isinstance(doc, dict) else {}

    def get(self, section: str, default: Any = None) -> Any:
        with self._lock:
            value = self._doc.get(section, default)
            return json.loads(json.dumps(value)) if value is not None else default

    def put(self, section: str, value: Any) -> None:
        with self._lock:
            if value is None:
                self._doc.pop(section, None)
            else:
                self._doc[section] = value
            atomic_write(self.path, json.dumps(self._doc, indent=1, sort_keys=True).encode())

    def delete(self, section: str) -> None:
        self.put(section, None)
