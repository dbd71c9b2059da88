"""Consul's blocking-query rules, shared by every watch (the daemon's and ``maintctl``'s)."""

from __future__ import annotations


def next_index(previous: int, returned: int) -> int:
    """The index for the next blocking query (Consul's documented rules)."""
    if returned < previous:
        return 0  # went backwards (e.g. a snapshot restore): start over
    return max(returned, 1)  # never block on 0
