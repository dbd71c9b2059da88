"""Shared fixtures: a real Consul dev agent per test session, a fresh environment per test."""

from __future__ import annotations

import itertools
import os
import signal
from collections.abc import Iterator

import pytest
from hypothesis import settings

from demo.harness.consul import ConsulAgentProcess
from tests.fixtures.scripts import SCRUBBED

_envs = itertools.count(1)

# Property tests: a quick loop while coding, many more examples in scripts/test (HYPOTHESIS_PROFILE=thorough).
settings.register_profile("quick", max_examples=50, deadline=None)
settings.register_profile("thorough", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "quick"))


def pytest_sessionstart(session: pytest.Session) -> None:
    """A SIGTERM (a CI time limit, ``timeout``) ends the run as Ctrl-C does: every fixture tears down and stops,
    by its PID, what it started; the default would leave Consul agents, HAProxy and boxes running."""
    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"{signal.Signals(signum).name}: stopping what the tests started")

    signal.signal(signal.SIGTERM, interrupted)


@pytest.fixture(scope="session", autouse=True)
def _no_consul_settings_from_the_shell() -> Iterator[None]:
    """The agent and maintctl read CONSUL_* and MAINTCTL_* as the consul command does; a developer's shell must not
    point the tests' agents at another Consul or CA. Tests that want a variable set it themselves."""
    with pytest.MonkeyPatch.context() as patch:
        for name in SCRUBBED:
            patch.delenv(name, raising=False)
        yield


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
