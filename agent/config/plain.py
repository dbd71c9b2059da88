"""The validated config as plain, read-only objects: what the running daemon holds instead of pydantic models.

pydantic and the config models cost an idle agent about 13 MB for the
process's life although they are needed once, at start. So ``maintenance-agent
run`` validates in a short-lived child (``load_in_child``): it loads the file
exactly as ``check-config`` does, copies the models into ``Plain`` objects
(``plain``) and hands them over a pipe, pickled; the daemon never imports
pydantic. A plain copy has the same attributes, values and methods
(``methods``) as its model, is frozen and compares by value; it has none of
pydantic's own API (``model_dump`` and friends), which the daemon does not use.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.config.methods import (
    AgentConfigMethods,
    AgentSectionMethods,
    ChatMethods,
    ConsulSectionMethods,
    PartnerMethods,
    SmtpMethods,
)
from agent.core.errors import ConfigError

if TYPE_CHECKING:
    from agent.config.schema import AgentConfig


class Plain:
    """One config table's validated keys as read-only attributes; ``kind`` names the table's model."""

    _kind: str
    _fields: tuple[str, ...]

    def __init__(self, kind: str, fields: dict[str, Any]):
        object.__setattr__(self, "_kind", kind)
        object.__setattr__(self, "_fields", tuple(fields))
        self.__dict__.update(fields)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{self._kind} is frozen: cannot set {name}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{self._kind} is frozen: cannot delete {name}")

    def _items(self) -> tuple[tuple[str, Any], ...]:
        return tuple((name, self.__dict__[name]) for name in self._fields)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Plain):
            return NotImplemented
        return (self._kind, self._items()) == (other._kind, other._items())

    def __hash__(self) -> int:
        return hash((self._kind, self._items()))

    def __repr__(self) -> str:
        return f"{self._kind}({', '.join(f'{name}={value!r}' for name, value in self._items())})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self._kind, dict(self._items())))


class AgentSectionPlain(AgentSectionMethods, Plain):
    pass


class ConsulSectionPlain(ConsulSectionMethods, Plain):
    pass


class AgentConfigPlain(AgentConfigMethods, Plain):
    pass


class PartnerPlain(PartnerMethods, Plain):
    pass


class SmtpPlain(SmtpMethods, Plain):
    pass


class ChatPlain(ChatMethods, Plain):
    pass


#: The plain class of each model with methods (by the methods class it inherits); any other table is a ``Plain``.
_PLAIN_CLASSES: tuple[tuple[type, type[Plain]], ...] = (
    (AgentSectionMethods, AgentSectionPlain),
    (ConsulSectionMethods, ConsulSectionPlain),
    (AgentConfigMethods, AgentConfigPlain),
    (PartnerMethods, PartnerPlain),
    (SmtpMethods, SmtpPlain),
    (ChatMethods, ChatPlain),
)


def plain(value: Any) -> Any:
    """A validated model (and everything in it) copied into plain objects; any other value as it is."""
    fields = getattr(type(value), "model_fields", None)
    if isinstance(fields, dict):
        kind = next((cls for base, cls in _PLAIN_CLASSES if isinstance(value, base)), Plain)
        return kind(type(value).__name__, {name: plain(getattr(value, name)) for name in fields})
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(plain(v) for v in value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def load_in_child(path: str | Path) -> AgentConfig:
    """``schema.load(path)`` run in a forked child, its result copied into plain objects (typed as the model it copies).

    Raises ``ConfigError`` exactly as ``load`` does. Call it from the main thread before any other starts (it forks).
    """
    # An ignored SIGCHLD is inherited across exec (a supervisor may start us so): the kernel would reap the child
    # before we could read its exit status. Default it for the child's life.
    inherited = signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    try:
        return _validated_by_a_child(path)
    finally:
        signal.signal(signal.SIGCHLD, inherited)


def _validated_by_a_child(path: str | Path) -> AgentConfig:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: validate, hand the result over, leave without running the parent's exit handlers
        os.close(read_end)
        code = 0
        try:
            from agent.config.schema import load

            try:
                result: tuple[str, Any] = ("config", plain(load(path)))
            except ConfigError as exc:
                result = ("problems", (exc.path, exc.problems))
            with os.fdopen(write_end, "wb") as out:
                pickle.dump(result, out)
        except BaseException:  # noqa: BLE001 - anything else: its traceback on stderr, the parent says the load failed
            traceback.print_exc()
            code = 70
        finally:
            sys.stderr.flush()
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as source:
        data = source.read()
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])  # -N: killed by signal N
    if code < 0:
        ended = f"was killed by {signal.Signals(-code).name}"
    elif code:
        ended = f"exited with status {code}"
    else:
        ended = "" if data else "handed nothing over"
    if ended:
        raise ConfigError(str(path), [f"validating the config failed: its child process {ended}"])
    what, payload = pickle.loads(data)  # written by our own child, over a pipe only it and we hold
    if what == "problems":
        raise ConfigError(*payload)
    return payload  # type: ignore[no-any-return]
