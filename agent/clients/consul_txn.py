"""Reading many keys at once: Consul's read-only transactions (``PUT /v1/txn`` of ``get`` operations).

A gate that waits for 42 boxes of a 1000-box fleet would otherwise read the
whole status prefix (every box's status, about 600 KB) or make 42 requests.
A read-only transaction is answered by the servers as a read, holds up to 64
operations, and fails whole when one key is missing (a dead box's status is
gone with its session): Consul names the failed operations, and the others
are read again without them. What the token may not read, Consul leaves out
of the answer without a word: that is a refusal here, not a missing key.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from agent.core.errors import ConsulPermissionDenied, PermanentError

TXN_MAX_OPS = 64  # Consul's limit of operations in one transaction

Send = Callable[[str, str, str], tuple[int, Any]]
"""(operations as JSON, what for errors, the ACL rule it needs) -> (HTTP status 200 or 409, the decoded answer)."""


def read_keys_txn(send: Send, keys: list[str], address: str) -> dict[str, dict[str, Any] | None]:
    """Each key's entry as Consul returns it (``Value`` base64), or None when missing."""
    wanted = list(dict.fromkeys(keys))
    out: dict[str, dict[str, Any] | None] = {}
    for start in range(0, len(wanted), TXN_MAX_OPS):
        out.update(_read_chunk(send, wanted[start:start + TXN_MAX_OPS], address))
    return out


def _read_chunk(send: Send, keys: list[str], address: str) -> dict[str, dict[str, Any] | None]:
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
        errors = body.get("Errors") or []
        missing = {int(e["OpIndex"]) for e in errors if "doesn't exist" in str(e.get("What", ""))}
        if not missing or len(missing) != len(errors):
            what = "; ".join(str(e.get("What", "")) for e in errors)[:200]
            if "Permission denied" in what:
                raise ConsulPermissionDenied(f"Consul refused a read of {len(keys)} keys (403 {what})", rule=rule)
            raise PermanentError(f"Consul at {address} refused a read of {len(keys)} keys: {what}")
        out.update({keys[i]: None for i in missing})
        keys = [key for i, key in enumerate(keys) if i not in missing]
    return out


def txn_answer(response: Any) -> tuple[int, Any]:
    """py-consul's callback for a transaction: 200 (results) and 409 (which operations failed) are both answers."""
    import consul.callback

    if response.code in (200, 409):
        return response.code, json.loads(response.body)
    consul.callback.CB._status(response)  # noqa: SLF001 - the typed exception py-consul raises for any other status
    raise ValueError(f"unexpected HTTP {response.code} from /v1/txn")


def _common_prefix(keys: list[str]) -> str:
    first, last = min(keys), max(keys)
    size = next((i for i, (a, b) in enumerate(zip(first, last, strict=False)) if a != b), min(len(first), len(last)))
    return first[:size]
