"""The daemon's copy of the config (``agent.config.plain``): the same keys, values and methods as the models, frozen,
and carried over a pipe from the validating child; the models keep no method of their own that a copy would lack."""

from __future__ import annotations

import inspect
import os
import pickle
import re
import signal
from pathlib import Path
from typing import Any

import pytest

from agent.config import schema
from agent.config.fields import FrozenModel
from agent.config.plain import Plain, load_in_child, plain
from agent.config.schema import AgentConfig, from_mapping, load
from agent.core.errors import ConfigError
from demo.harness.agents import to_toml

PROJECT = Path(__file__).resolve().parents[2]


def every_table(tmp_path: Path) -> dict[str, Any]:
    secret = tmp_path / "hook.secret"
    secret.write_text("0123456789abcdef0123\n")
    return {
        "agent": {"node": "box-1", "roles": ["edge", "web", "worker", "scheduler"], "environment": "prod", "state_dir": "/var/lib/ma"},
        "consul": {"address": "https://consul.internal:8501", "token": "t0k3n", "session_ttl_seconds": 20},
        "edge": {"map_file": "/var/lib/ma/maintenance.map",
                 "verify_maintenance": [{"name": "ui", "url": "http://127.0.0.1:8443/", "expect_status": 200, "expect_body": "maintenance"}],
                 "verify_active": [{"name": "ui", "url": "http://127.0.0.1:8443/", "headers": {"Host": "pay.example"}}]},
        "worker": {"backend": "systemd", "services": ["ledger@*.service", "billing.service"]},
        "scheduler": {"backend": "systemd", "jobs": ["report.timer"]},
        "web": {"smoke": [{"name": "health", "url": "http://127.0.0.1:8080/health", "max_latency_seconds": 2.0}]},
        "notices": {"contact": "NOC +41 00 000 00 00",
                    "partners": [{"name": "acme", "url": "https://hooks.acme.example/m", "secret_file": str(secret)},
                                 {"name": "globex", "email": ["Globex NOC <noc@globex.example>"], "timezone": "Europe/Zurich"}],
                    "smtp": {"host": "smtp.internal", "sender": "Payments <maint@pay.example>"},
                    "chat": {"url": "https://chat.internal/hooks/abc"}},
        "alertmanager": {"url": "http://127.0.0.1:9093", "matchers": [{"name": "env", "value": "prod"}]},
        "alert_gate": {"url": "http://127.0.0.1:9090", "roles": ["edge", "web"]},
    }


def same(model: Any, copy: Any, where: str = "config") -> None:
    """``copy`` holds what ``model`` holds, table by table, and is a Plain wherever the model is a model."""
    if isinstance(model, FrozenModel):
        assert isinstance(copy, Plain) and copy._kind == type(model).__name__, where  # noqa: SLF001 - what the copy says it is
        for name in type(model).model_fields:
            same(getattr(model, name), getattr(copy, name), f"{where}.{name}")
    elif isinstance(model, list):
        assert isinstance(copy, list) and len(copy) == len(model), where
        for i, (m, c) in enumerate(zip(model, copy, strict=True)):
            same(m, c, f"{where}[{i}]")
    elif isinstance(model, dict):
        assert isinstance(copy, dict) and list(copy) == list(model), where
        for key, m in model.items():
            same(m, copy[key], f"{where}[{key!r}]")
    else:
        assert copy == model and type(copy) is type(model), where


COMMANDS = {"svc": {"stop": "systemctl stop svc", "start": "systemctl start svc", "status": "systemctl is-active svc",
                    "running": "pgrep -f svc-run", "stop_running": "pkill -f svc-run"}}


def command_backends() -> dict[str, Any]:
    """The one table of models in a dict (``commands``), on both roles that take it."""
    return {"agent": {"node": "box-2", "roles": ["worker", "scheduler"], "environment": "prod", "state_dir": "/var/lib/ma"},
            "worker": {"backend": "command", "services": ["svc"], "commands": COMMANDS},
            "scheduler": {"backend": "command", "jobs": ["svc"], "commands": COMMANDS, "on_drain_timeout": "stop"}}


@pytest.fixture(params=["config.toml", "deploy/examples/worker.toml", "deploy/examples/scheduler.toml", "every table", "command backends"])
def config(request: pytest.FixtureRequest, tmp_path: Path) -> AgentConfig:
    if request.param == "every table":
        return from_mapping(every_table(tmp_path))
    if request.param == "command backends":
        return from_mapping(command_backends())
    return load(PROJECT / request.param)


def test_a_copy_has_every_key_and_value_of_its_model(config: AgentConfig) -> None:
    same(config, plain(config))


def test_a_copy_computes_what_its_model_computes(tmp_path: Path) -> None:
    model = from_mapping(every_table(tmp_path))
    copy = plain(model)
    assert copy.agent.holds_dir == model.agent.holds_dir == Path("/var/lib/ma/holds")
    assert copy.env_prefix == model.env_prefix == "maintenance/prod"
    assert copy.gated_roles() == model.gated_roles() and len(copy.gated_roles()) == 2
    assert copy.consul.connection({}) == model.consul.connection({}) and copy.consul.resolved_token() == "t0k3n"
    acme, globex = copy.notices.partners
    assert (acme.channels(), globex.channels()) == (["webhook"], ["email"])
    assert acme.resolved_secret() == model.notices.partners[0].resolved_secret() == b"0123456789abcdef0123"
    assert copy.notices.chat.resolved_url() == "https://chat.internal/hooks/abc"


def test_a_copy_is_frozen_compares_by_value_and_survives_the_pipe(tmp_path: Path) -> None:
    copy = plain(from_mapping(every_table(tmp_path)))
    with pytest.raises(AttributeError, match="AgentSection is frozen"):
        copy.agent.node = "other"  # type: ignore[misc]
    with pytest.raises(AttributeError, match="frozen"):
        del copy.consul.token
    assert pickle.loads(pickle.dumps(copy)) == copy
    assert b"pydantic" not in pickle.dumps(copy), "a value of pydantic's own type would load pydantic into the daemon"
    assert copy != plain(from_mapping({**every_table(tmp_path), "agent": {**every_table(tmp_path)["agent"], "node": "box-2"}}))
    assert hash(copy.metrics) == hash(plain(from_mapping(every_table(tmp_path))).metrics)


def test_no_model_defines_a_method_its_copy_would_lack() -> None:
    """A method written on a model instead of in ``agent.config.methods`` would be missing in the daemon."""
    def models(cls: type) -> list[type]:
        return [cls, *(m for sub in cls.__subclasses__() for m in models(sub))]

    for model in models(FrozenModel):
        own = [name for name, value in vars(model).items() if not name.startswith("_") and name != "model_config"
               and (inspect.isfunction(value) or isinstance(value, property | staticmethod | classmethod))]
        class_vars = [name for name in getattr(model, "__class_vars__", ()) if not name.startswith("_") and name != "model_config"]
        assert own + class_vars == [], f"{model.__name__} defines {own + class_vars}: put them in agent.config.methods"


def test_the_daemon_asks_its_config_nothing_only_a_model_would_answer() -> None:
    """mypy sees the daemon's config as the models: it would let ``model_dump()`` through, which a copy has not."""
    used = [f"{path.relative_to(PROJECT)}:{n}: {line.strip()}"
            for side in ("daemon", "partners", "clients")
            for path in sorted((PROJECT / "agent" / side).rglob("*.py"))
            for n, line in enumerate(path.read_text().splitlines(), 1)
            if re.search(r"\bmodel_[a-z]+|__pydantic|\bFrozenModel\b", line)]
    assert used == []


def test_the_child_reports_its_crash_and_its_death(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "box.toml"
    path.write_text(to_toml(command_backends()))

    def crash(path: Path) -> None:
        raise RuntimeError("a bug in the models")

    monkeypatch.setattr(schema, "load", crash)  # the forked child inherits the patched module
    with pytest.raises(ConfigError, match="its child process exited with status 70"):
        load_in_child(path)
    monkeypatch.setattr(schema, "load", lambda path: os.kill(os.getpid(), signal.SIGKILL))
    with pytest.raises(ConfigError, match="its child process was killed by SIGKILL"):
        load_in_child(path)


def test_an_ignored_sigchld_inherited_from_whoever_started_us_does_not_lose_the_child(tmp_path: Path) -> None:
    path = tmp_path / "box.toml"
    path.write_text(to_toml(command_backends()))
    before = signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    try:
        assert load_in_child(path) == plain(from_mapping(command_backends()))
        assert signal.getsignal(signal.SIGCHLD) == signal.SIG_IGN, "given back as it was"
    finally:
        signal.signal(signal.SIGCHLD, before)


def test_the_child_loads_what_load_loads_and_its_problems_alike(tmp_path: Path) -> None:
    path = tmp_path / "box.toml"
    path.write_text(to_toml(every_table(tmp_path)))
    assert load_in_child(path) == plain(load(path))
    path.write_text(to_toml({**every_table(tmp_path), "metrics": {"listen": "nowhere"}}))
    with pytest.raises(ConfigError) as in_child:
        load_in_child(path)
    with pytest.raises(ConfigError) as here:
        load(path)
    assert (in_child.value.path, in_child.value.problems) == (here.value.path, here.value.problems)
