"""One line and exit code 2 for every usage error, for both entry points (maintctl and maintenance-agent).

click prints a usage error as three lines (usage, hint, error) and lets an
unexpected exception end in a traceback. An operator at 2 a.m., or a script
reading the exit code, needs one line saying what is wrong and exit 2 (1
means "not converged yet" to maintctl's callers).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, NoReturn

import click

EXIT_OK, EXIT_NOT_YET, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130


def fail_line(prog: str, message: str, as_json: bool = False) -> NoReturn:
    """One line on stderr (and, with ``--json``, ``{"error": ...}`` on stdout) and exit code 2."""
    line = " ".join(message.split())
    if as_json:
        click.echo(json.dumps({"error": line, "exit_code": EXIT_ERROR}))
    click.echo(f"{prog}: error: {line}", err=True)
    sys.exit(EXIT_ERROR)


class OneLineErrorGroup(click.Group):
    """A click group whose usage errors and unexpected failures are one line and exit 2 (``<PROG>_DEBUG=1``: the traceback)."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        prog = prog_name or self.name or "command"
        as_json = "--json" in argv
        try:
            result = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.ctx.get_help() if exc.ctx else "", err=True)
            sys.exit(EXIT_ERROR)
        except click.UsageError as exc:
            where = f"{exc.ctx.command_path} --help" if exc.ctx else f"{prog} --help"
            fail_line(prog, f"{exc.format_message()} (see {where})", as_json)
        except click.ClickException as exc:
            fail_line(prog, exc.format_message(), as_json)
        except click.Abort:
            click.echo(f"{prog}: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except (OSError, ValueError, TypeError, LookupError, RuntimeError, ArithmeticError) as exc:
            if os.environ.get(f"{prog.upper().replace('-', '_')}_DEBUG"):
                raise
            fail_line(prog, f"unexpected {type(exc).__name__}: {exc} (a bug: {prog.upper().replace('-', '_')}_DEBUG=1 shows where)", as_json)
        if not standalone_mode:
            return result
        sys.exit(result if isinstance(result, int) else EXIT_OK)
