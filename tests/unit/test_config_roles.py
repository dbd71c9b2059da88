"""The [worker] and [scheduler] tables: example files load, mistakes are refused with their key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config.schema import AgentConfig, from_mapping, load
from agent.core.errors import ConfigError
from agent.core.model import Role
from agent.daemon.backends.command import CommandBackend
from agent.daemon.backends.supervisor import SupervisorBackend
from agent.daemon.backends.systemd import SystemdBackend
from agent.daemon.steps.hooks import FlagFileStep, HooksStep, build_hook_steps
from agent.daemon.steps.jobs import SchedulerJobsStep, build_scheduler_steps
from agent.daemon.steps.services import WorkerServicesStep, build_worker_steps

EXAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "examples"
AGENT = {"environment": "prod", "node": "box-1"}


def _config(**tables: object) -> AgentConfig:
    roles = [name for name in ("worker", "scheduler") if name in tables]
    return from_mapping({"agent": {**AGENT, "roles": roles or ["web"]}, **tables})


def _problems(**tables: object) -> str:
    with pytest.raises(ConfigError) as failed:
        _config(**tables)
    return "\n".join(failed.value.problems)


def test_examples_load_and_build_their_steps(tmp_path: Path) -> None:
    worker = load(EXAMPLES / "worker.toml")
    scheduler = load(EXAMPLES / "scheduler.toml")
    (step,) = build_worker_steps(worker)
    assert isinstance(step, WorkerServicesStep) and isinstance(step.backend, SystemdBackend)
    assert step.role is Role.WORKER and step.services == ["billpay-worker@*.service", "billpay-ledger-sync.service"]
    (job_step,) = build_scheduler_steps(scheduler)
    assert isinstance(job_step, SchedulerJobsStep) and job_step.drain_timeout == 900 and job_step.on_drain_timeout == "stop"
    assert build_scheduler_steps(worker) == [] and build_worker_steps(scheduler) == []
    flag, hooks = build_hook_steps(worker, Role.WORKER)
    assert isinstance(flag, FlagFileStep) and flag.path == Path("/var/lib/maintenance-agent/maintenance.flag")
    assert isinstance(hooks, HooksStep) and hooks.role is Role.WORKER and hooks.directory == Path("/etc/maintenance-agent/hooks.d")


def test_supervisor_and_command_backends_are_built_from_their_tables() -> None:
    config = _config(
        worker={"backend": "supervisor", "services": ["pool"], "supervisor": {"url": "http://127.0.0.1:9001", "username": "u", "password": "p"}},
        scheduler={"backend": "command", "jobs": ["export"], "on_drain_timeout": "wait",
                   "commands": {"export": {"stop": "a", "start": "b", "status": "c", "running": "d"}}},
    )
    assert isinstance(build_worker_steps(config)[0].backend, SupervisorBackend)  # type: ignore[attr-defined]
    assert isinstance(build_scheduler_steps(config)[0].backend, CommandBackend)  # type: ignore[attr-defined]


def test_listed_role_without_its_table_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"role 'worker' is listed in agent.roles but there is no \[worker\] table"):
        from_mapping({"agent": {**AGENT, "roles": ["worker"]}})


def test_mistakes_are_refused_with_their_key_path() -> None:
    assert "worker.backend: Input should be 'systemd', 'supervisor' or 'command'" in _problems(worker={"backend": "docker", "services": ["a"]})
    assert "worker.services: List should have at least 1 item" in _problems(worker={"backend": "systemd", "services": []})
    assert 'needs a commands table for b' in _problems(
        worker={"backend": "command", "services": ["a", "b"], "commands": {"a": {"stop": "x", "start": "y", "status": "z"}}})
    assert "worker.supervisor.url: expected unix:///path" in _problems(worker={"backend": "supervisor", "services": ["a"], "supervisor": {"url": "ftp://x"}})
    assert "scheduler.on_drain_timeout" in _problems(scheduler={"backend": "systemd", "jobs": ["a.timer"], "on_drain_timeout": "kill"})
    assert "needs stop_running for export" in _problems(
        scheduler={"backend": "command", "jobs": ["export"], "commands": {"export": {"stop": "a", "start": "b", "status": "c", "running": "d"}}})
    assert "is_enabled, disable and enable go together" in _problems(
        worker={"backend": "command", "services": ["a"], "commands": {"a": {"stop": "x", "start": "y", "status": "z", "disable": "q"}}})
    assert "worker.drain_timeout_seconds: unknown key" in _problems(worker={"backend": "systemd", "services": ["a.service"], "drain_timeout_seconds": 5})


def test_systemd_names_must_be_holdable_by_a_drop_in() -> None:
    problems = _problems(worker={"backend": "systemd", "services": ["billing", "*worker*.service", "ledger@*.service", "billpay-*.service"]})
    assert "worker.services: 'billing': expected a unit name with its type (a service or a timer), e.g. 'billing-worker.service'" in problems
    assert "'*worker*.service': a systemd glob must be a template's instances, 'TEMPLATE@*.service'" in problems
    assert "'billpay-*.service': a systemd glob must be a template's instances" in problems
    assert "'ledger@*.service':" not in problems
    _config(scheduler={"backend": "systemd", "jobs": ["export@*.timer", "nightly.timer"]})


@pytest.mark.parametrize("name", ["*.timer", "*.service", "@*.service", "-*.service", "poweroff.target", "foo.socket",
                                  "foo.service\n", "polkit.service", "dbus.service", "systemd-journald.service",
                                  "getty@*.service", "debug-shell.service", "maintenance-agent.service", "user@*.service"])
def test_no_glob_or_unit_that_reaches_beyond_the_configured_workers(name: str) -> None:
    """A type or prefix glob, a unit of another type, a line break, or a unit the box depends on: refused by name."""
    assert repr(name) in _problems(worker={"backend": "systemd", "services": [name]})
