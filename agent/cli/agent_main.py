"""``maintenance-agent``: run the agent of this box, or check a config file."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

import click
import structlog

from agent import __version__
from agent.config import load
from agent.errors import ConfigError
from agent.logs import configure_logging

DEFAULT_CONFIG = "/etc/maintenance-agent/config.toml"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="maintenance-agent")
def cli() -> None:
    """The maintenance agent of one box: watches the Consul key and converges the box."""


@cli.command("check-config")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=DEFAULT_CONFIG, show_default=True)
def check_config(config_path: Path) -> None:
    """Validate a config file; exit 0 when good, 2 listing every problem when not."""
    try:
        config = load(config_path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)
    roles = ", ".join(r.value for r in config.agent.roles)
    click.echo(f"{config_path}: ok (node {config.agent.node}, roles {roles}, key {config.env_prefix}/desired)")


@cli.command("run")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=DEFAULT_CONFIG, show_default=True)
def run(config_path: Path) -> None:
    """Run the agent until SIGTERM/SIGINT."""
    try:
        config = load(config_path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)
    configure_logging(config.log.format, config.log.level)
    from agent.app import Agent  # imported late: check-config must not need the runtime

    agent = Agent(config, log=structlog.get_logger())
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    agent.start()
    stop.wait()
    agent.stop()


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
