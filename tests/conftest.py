"""Shared fixtures: a real Consul dev agent per test session, a fresh environment per test."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

from demo.harness.consul import ConsulAgentProcess

_envs = itertools.count(1)

# Property tests: a quick loop while coding, many more examples in scripts/test (HYPOTHESIS_PROFILE=thorough).
settings.register_profile("quick", max_examples=50, deadline=None)
settings.register_profile("thorough", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "quick"))


@pytest.fixture(scope="session")
def consul_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsulAgentProcess]:
    server = ConsulAgentProcess(tmp_path_factory.mktemp("consul")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def environment() -> str:
    """A fresh environment name per test: keys and registrations never leak between tests."""
    return f"t{next(_envs)}"


@pytest.fixture
def own_consul(tmp_path) -> Iterator[ConsulAgentProcess]:
    """A Consul dev agent of this test's own (the test may stop, restart or break it)."""
    server = ConsulAgentProcess(tmp_path / "consul").start()
    try:
        yield server
    finally:
        server.stop()
