"""structlog set-up: journald fields under systemd, JSON lines off a terminal, readable console output on one.

Called once by the command-line entry point (structlog's configuration is
process-wide); agents bind their own context (node, role, intent index).
``auto`` picks journald when systemd connected stderr to the journal (``journal``).
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

from agent.daemon.local.journal import journal_logger_factory, render_journal, stderr_is_the_journal


def configure_logging(fmt: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    stream = stream or sys.stderr
    if fmt == "journal" or (fmt == "auto" and stream is sys.stderr and stderr_is_the_journal()):
        _configure(render_journal, journal_logger_factory, level)
        return
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    renderer = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    _configure(renderer, structlog.PrintLoggerFactory(file=stream), level)


def _configure(renderer: Any, factory: Any, level: str) -> None:
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=factory,
        cache_logger_on_first_use=False,
    )
