"""Reading many keys at once: Consul's read-only transactions (``PUT /v1/txn`` of ``get`` operations).

A gate that waits for 42 boxes of a 1000-box fleet would otherwise read the
whole status prefix (every box's status, about 600 KB) or make 42 requests.
A read-only transaction is answered by the servers as a read and holds up to
64 operations. It fails whole (409) when a key is missing (a dead box's
status is gone with its session), naming the failed operations by their
index; the others are read again without them.

Told by the answer's structure, never by Consul's wording: a ``get`` can
fail only because its key is missing. Consul checks a ``get``'s ACL on the
output side (``kvsPreApply`` leaves reads to the result filter), so what the
token may not read is left out of a 200's results without a word: that is a
refusal here (``ConsulPermissionDenied``, naming the rule), not a missing
key. A refused transaction as a whole is a 403 the transport reports. Were
Consul ever to fail a ``get`` for another reason, the key would read as
missing, which for a gate means "not there yet": it stays shut.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from agent.clients.consul_failures import BrokenAnswer
from agent.core.errors import ConsulPermissionDenied

TXN_MAX_OPS = 64  # Consul's limit of operations in one transaction

Send = Callable[[str, str, str], tuple[int, Any]]
"""(operations as JSON, what for errors, the ACL rule it needs) -> (HTTP status 200 or 409, the decoded answer)."""


def read_keys_txn(send: Send, keys: list[str]) -> dict[str, dict[str, Any] | None]:
    """Each key's entry as Consul returns it (``Value`` base64), or None when missing."""
    wanted = list(dict.fromkeys(keys))
    out: dict[str, dict[str, Any] | None] = {}
    for start in range(0, len(wanted), TXN_MAX_OPS):
        out.update(_read_chunk(send, wanted[start:start + TXN_MAX_OPS]))
    return out


def _read_chunk(send: Send, keys: list[str]) -> dict[str, dict[str, Any] | None]:
    rule = f'key_prefix "{_common_prefix(keys)}" {{ policy = "read" }}'
    out: dict[str, dict[str, Any] | None] = {}
    while keys:
        ops = json.dumps([{"KV": {"Verb": "get", "Key": key}} for key in keys])
        code, body = send(ops, f"read of {len(keys)} keys", rule)
        if code == 200:
            read = {result["KV"]["Key"]: result["KV"] for result in body.get("Results") or []}
            hidden = [key for key in keys if key not in read]
            if hidden:  # Consul leaves out what the token may not read, silently: say so, naming the rule
                raise ConsulPermissionDenied(f"Consul left {len(hidden)} of {len(keys)} keys out of a read (ACL)",
                                             rule=f'key_prefix "{_common_prefix(hidden)}" {{ policy = "read" }}')
            out.update(read)
            return out
        missing = _failed_operations(body, len(keys))
        out.update({keys[i]: None for i in missing})
        keys = [key for i, key in enumerate(keys) if i not in missing]
    return out


def _failed_operations(body: Any, count: int) -> set[int]:
    """The operations a rolled-back transaction (409) names; an answer naming none, or one not sent, is broken."""
    errors = body.get("Errors") if isinstance(body, dict) else None
    if not errors:
        raise BrokenAnswer("a rolled-back transaction (409) that names no failed operation")
    failed = [error.get("OpIndex") if isinstance(error, dict) else None for error in errors]
    named = {i for i in failed if isinstance(i, int) and 0 <= i < count}
    if len(named) != len(failed):
        raise BrokenAnswer(f"a rolled-back transaction naming operations that were not sent: {str(errors)[:120]}")
    return named


def _common_prefix(keys: list[str]) -> str:
    first, last = min(keys), max(keys)
    size = next((i for i, (a, b) in enumerate(zip(first, last, strict=False)) if a != b), min(len(first), len(last)))
    return first[:size]
