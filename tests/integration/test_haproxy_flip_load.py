"""Flipping under keep-alive load from other processes: no error, no reset, no third kind of answer."""

from __future__ import annotations

import pytest

from bench import haproxy_flip


def _assert_clean(totals: dict[str, float], loaders: int, threads: int, min_flips: int) -> None:
    assert totals["errors"] == 0, totals
    assert totals.get("other", 0) == 0, totals
    assert totals["connections"] == loaders * threads, totals  # every keep-alive connection survived
    assert totals["flips"] >= min_flips, totals
    assert totals["backend"] > 0 and totals["maintenance"] > 0, totals
    assert totals["requests"] == totals["backend"] + totals["maintenance"], totals


def test_flip_under_load_short() -> None:
    totals = haproxy_flip.run_bench(seconds=2.0, loaders=1, threads=2, flip_every=0.1, max_requests=20_000)
    _assert_clean(totals, loaders=1, threads=2, min_flips=6)


@pytest.mark.slow
def test_flip_under_load() -> None:
    totals = haproxy_flip.run_bench(seconds=10.0, loaders=2, threads=4, flip_every=0.1, max_requests=200_000)
    _assert_clean(totals, loaders=2, threads=4, min_flips=40)
