"""Run one external command with a hard timeout, and describe its failure exactly.

Shared by the systemd and command backends and by hooks: the child gets its
own session so a timeout kills it *and* whatever it spawned (a shell pipeline
would otherwise keep the output pipe open and hang the agent).
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from agent.daemon.backends.base import BackendError, truncate


@dataclass(frozen=True)
class CommandResult:
    command: str
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return "\n".join(part for part in (self.stdout.strip(), self.stderr.strip()) if part)

    def failure(self, what: str = "") -> str:
        """One line for an error: the command, its exit code and its (truncated) output."""
        prefix = f"{what}: " if what else ""
        shown = truncate(self.output) or "(no output)"
        return f"{prefix}`{self.command}` exited with {self.returncode}: {shown}"


def run_command(
    command: Sequence[str] | str,
    timeout: float,
    env: Mapping[str, str] | None = None,
) -> CommandResult:
    """Run ``command`` (an argv list, or a string for ``/bin/sh -c``) and return its result.

    A non-zero exit is returned, not raised (callers decide what it means);
    a missing executable or a timeout raises ``BackendError``.
    """
    shell = isinstance(command, str)
    shown = command if isinstance(command, str) else shlex.join(command)
    try:
        proc = subprocess.Popen(
            command, shell=shell, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=dict(env) if env is not None else None, start_new_session=True, text=True, errors="replace",
        )
    except OSError as exc:
        raise BackendError(f"`{shown}` could not be started: {exc.strerror or exc}") from None
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_session(proc)
        try:
            stdout, stderr = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            # A grandchild that left our session still holds the pipes: stop
            # reading rather than hang the decision thread on it.
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
            stdout, stderr = "", ""
        partial = truncate("\n".join(p for p in (stdout or "", stderr or "") if p.strip()))
        raise BackendError(f"`{shown}` timed out after {timeout:g}s and was killed; output so far: {partial or '(none)'}") from None
    return CommandResult(shown, proc.returncode, stdout, stderr)


def _kill_session(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
