"""HooksStep and FlagFileStep with real executables in a temp hooks.d."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.core.errors import StepError
from agent.core.model import Mode, Role
from agent.daemon.steps.hooks import FlagFileStep, HooksStep
from tests.fixtures.steps import step_context


def _hook(folder: Path, name: str, body: str, executable: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755 if executable else 0o644)
    return path


def test_enter_hooks_run_in_name_order_with_the_intent_in_the_environment(tmp_path: Path) -> None:
    hooks, out = tmp_path / "hooks.d", tmp_path / "out.txt"
    _hook(hooks / "enter", "20-second", f'echo "second $MAINTENANCE_MODE" >> {out}')
    _hook(hooks / "enter", "10-first", f'echo "first $MAINTENANCE_INTENT_INDEX $MAINTENANCE_NODE $MAINTENANCE_REASON [$MAINTENANCE_ENDS_AT]" >> {out}')
    _hook(hooks / "enter", "15-not-executable", f"echo nope >> {out}", executable=False)
    _hook(hooks / "enter", ".hidden", f"echo nope >> {out}")
    step = HooksStep(hooks, timeout=5, role=Role.WORKER)
    ctx = step_context(tmp_path / "s.json")
    assert not step.check(ctx, Mode.MAINTENANCE)
    step.apply(ctx)
    assert out.read_text().splitlines() == ["first 42 worker-1 db upgrade []", "second maintenance"]
    assert step.check(ctx, Mode.MAINTENANCE)
    assert not step.check(step_context(tmp_path / "s.json", index=50), Mode.MAINTENANCE), "a new intent runs them again"
    assert not step.check(ctx, Mode.ACTIVE)


def test_exit_hooks_run_on_revert_and_then_active_holds(tmp_path: Path) -> None:
    hooks, out = tmp_path / "hooks.d", tmp_path / "out.txt"
    _hook(hooks / "exit", "10-back", f'echo "back $MAINTENANCE_MODE" >> {out}')
    step = HooksStep(hooks, timeout=5, role=Role.WORKER)
    assert step.check(step_context(tmp_path / "s.json", Mode.ACTIVE), Mode.ACTIVE), "never entered: nothing to undo"
    step.apply(step_context(tmp_path / "s.json"))
    step.revert(step_context(tmp_path / "s.json", Mode.ACTIVE, 43))
    assert out.read_text() == "back active\n"
    assert step.check(step_context(tmp_path / "s.json", Mode.ACTIVE, 43), Mode.ACTIVE)


def test_a_failing_hook_is_a_step_error_and_the_step_does_not_hold(tmp_path: Path) -> None:
    hooks = tmp_path / "hooks.d"
    failing = _hook(hooks / "enter", "10-drain-lb", "echo 'lb api said 500' >&2; exit 2")
    step = HooksStep(hooks, timeout=5, role=Role.WORKER)
    ctx = step_context(tmp_path / "s.json")
    with pytest.raises(StepError) as failed:
        step.apply(ctx)
    assert failed.value.detail == f"hook failed: `{failing}` exited with 2: lb api said 500"
    assert not step.check(ctx, Mode.MAINTENANCE)
    assert not step.check(ctx, Mode.ACTIVE), "half-run enter hooks still need the exit hooks"


def test_a_hook_that_hangs_is_killed_at_its_timeout(tmp_path: Path) -> None:
    hooks = tmp_path / "hooks.d"
    _hook(hooks / "enter", "10-slow", "sleep 30")
    with pytest.raises(StepError, match="timed out after 0.5s"):
        HooksStep(hooks, timeout=0.5, role=Role.WORKER).apply(step_context(tmp_path / "s.json"))


def test_flag_file_holds_the_intent_while_in_maintenance(tmp_path: Path) -> None:
    flag = tmp_path / "state" / "maintenance.flag"
    step = FlagFileStep(flag, Role.WORKER)
    ctx = step_context(tmp_path / "s.json")
    assert step.check(ctx, Mode.ACTIVE) and not step.check(ctx, Mode.MAINTENANCE)
    step.apply(ctx)
    doc = json.loads(flag.read_text())
    assert doc == {"mode": "maintenance", "reason": "db upgrade", "intent_index": 42, "node": "worker-1"}
    assert flag.stat().st_mode & 0o004, "other scripts can read it"
    assert step.check(ctx, Mode.MAINTENANCE)
    assert not step.check(step_context(tmp_path / "s.json", reason="longer"), Mode.MAINTENANCE), "a new reason rewrites it"
    step.revert(ctx)
    assert not flag.exists() and step.check(ctx, Mode.ACTIVE)
