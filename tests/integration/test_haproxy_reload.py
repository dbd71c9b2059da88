"""Reloading the shipped HAProxy config under keep-alive load drops no request (option idle-close-on-response).

The reload deploy/haproxy/README.md prescribes after editing the pattern
files must not cost a client a request it sent on an idle keep-alive
connection. bench/haproxy_reload.py measures the same against a baseline
without the option (which drops some); here the shipped config must drop none.
"""

from __future__ import annotations

import pytest

from bench import haproxy_reload


@pytest.mark.slow
def test_reloads_under_keep_alive_load_drop_no_request() -> None:
    totals = haproxy_reload.measure(with_option=True, reloads=15, threads=8, pause=0.3)
    assert totals["requests"] > 500, totals
    assert totals["dropped"] == 0, totals
    assert totals["answered"] == totals["requests"], totals
    assert totals["closed_by_announce"] > 0, "old workers closed their connections after answering, announced"
