"""Local hooks and the maintenance flag file: how other scripts on the box learn about a window.

``HooksStep`` runs the executables in ``<hooks.dir>/enter/`` when entering and
``<hooks.dir>/exit/`` when leaving, in name order, each with a timeout and the
intent in its environment (``MAINTENANCE_MODE``, ``MAINTENANCE_INTENT_INDEX``,
``MAINTENANCE_REASON``, ``MAINTENANCE_ENDS_AT``, ``MAINTENANCE_NODE``). The
notes remember which intent the hooks last completed for, so a successful run
is not repeated. ``FlagFileStep`` keeps ``<state_dir>/maintenance.flag``
(the intent as JSON) present exactly while the box is in maintenance.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from agent.clients.files import atomic_write
from agent.core.errors import StepError
from agent.core.model import Mode, Role
from agent.daemon.backends.base import BackendError
from agent.daemon.backends.run import run_command
from agent.daemon.steps.base import Step, StepContext

if TYPE_CHECKING:
    from agent.config.schema import AgentConfig

FLAG_FILE_NAME = "maintenance.flag"


def hook_environment(ctx: StepContext) -> dict[str, str]:
    intent = ctx.intent
    return {
        **os.environ,
        "MAINTENANCE_MODE": intent.mode.value,
        "MAINTENANCE_INTENT_INDEX": str(intent.index),
        "MAINTENANCE_REASON": intent.reason,
        "MAINTENANCE_ENDS_AT": intent.ends_at.isoformat() if intent.ends_at else "",
        "MAINTENANCE_NODE": ctx.node,
    }


def executables(folder: Path) -> list[Path]:
    """The hooks in ``folder`` in name order, like run-parts: executable regular files, no dot files or backups."""
    if not folder.is_dir():
        return []
    return sorted(
        path for path in folder.iterdir()
        if not path.name.startswith(".") and not path.name.endswith(("~", ".dpkg-old", ".dpkg-dist", ".dpkg-new"))
        and path.is_file() and os.access(path, os.X_OK)
    )


class HooksStep(Step):
    """Run the enter hooks when entering and the exit hooks when leaving."""

    def __init__(self, directory: Path, timeout: float, role: Role, name: str = "hooks"):
        self.directory = directory
        self.timeout = timeout
        self.role = role
        self.name = name

    def check(self, ctx: StepContext, target: Mode) -> bool:
        notes = ctx.notes(self)
        if target is Mode.MAINTENANCE:
            return notes.get("phase") == "enter" and notes.get("complete") is True and notes.get("intent_index") == ctx.intent.index
        # Never entered, or the exit hooks completed: nothing to undo.
        return not notes or (notes.get("phase") == "exit" and notes.get("complete") is True)

    def apply(self, ctx: StepContext) -> None:
        self._run_phase(ctx, "enter")

    def revert(self, ctx: StepContext) -> None:
        self._run_phase(ctx, "exit")

    def _run_phase(self, ctx: StepContext, phase: str) -> None:
        # Written before running: a crash halfway through enter hooks still gets the exit hooks later.
        ctx.save_notes(self, {"phase": phase, "complete": False, "intent_index": ctx.intent.index})
        env = hook_environment(ctx)
        for hook in executables(self.directory / phase):
            self._run_hook(hook, env)
            ctx.log.info("hook ran", step=self.name, hook=str(hook))
        ctx.save_notes(self, {"phase": phase, "complete": True, "intent_index": ctx.intent.index})

    def _run_hook(self, hook: Path, env: dict[str, str]) -> None:
        try:
            result = run_command([str(hook)], timeout=self.timeout, env=env)
        except BackendError as exc:
            raise StepError(self.name, f"hook {exc.detail}") from None
        if result.returncode != 0:
            raise StepError(self.name, result.failure("hook failed"))


class FlagFileStep(Step):
    """``<state_dir>/maintenance.flag`` holds the intent JSON while in maintenance; absent otherwise."""

    repairs_drift = True
    local_check = True

    def __init__(self, path: Path, role: Role, name: str = "flag-file"):
        self.path = path
        self.role = role
        self.name = name

    @staticmethod
    def content(ctx: StepContext) -> bytes:
        doc = json.loads(ctx.intent.to_json())
        doc.update({"intent_index": ctx.intent.index, "node": ctx.node})
        return (json.dumps(doc, sort_keys=True) + "\n").encode()

    def check(self, ctx: StepContext, target: Mode) -> bool:
        if target is Mode.MAINTENANCE:
            try:
                return self.path.read_bytes() == self.content(ctx)
            except FileNotFoundError:
                return False
        return not self.path.exists()

    def apply(self, ctx: StepContext) -> None:
        try:
            atomic_write(self.path, self.content(ctx), mode=0o644)
        except OSError as exc:
            raise StepError(self.name, f"cannot write {self.path}: {exc.strerror or exc}") from None

    def revert(self, ctx: StepContext) -> None:
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            raise StepError(self.name, f"cannot remove {self.path}: {exc.strerror or exc}") from None


def build_hook_steps(config: AgentConfig, role: Role) -> list[Step]:
    """The flag file and (when ``hooks.dir`` is set) the hooks, acting as part of ``role``.

    Call it once per box, with the role whose position in the order the hooks
    should take (the steps' names are fixed, so their notes survive a change of role).
    Entering order: flag file first, then the enter hooks (they may test the flag).
    """
    steps: list[Step] = [FlagFileStep(config.agent.state_dir / FLAG_FILE_NAME, role)]
    if config.hooks.dir is not None:
        steps.append(HooksStep(config.hooks.dir, config.hooks.timeout_seconds, role))
    return steps
