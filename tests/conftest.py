"""Shared fixtures: a real Consul dev agent per test session, a fresh environment per test."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from demo.harness.consul import ConsulAgentProcess

_envs = itertools.count(1)


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
