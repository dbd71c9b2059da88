"""``maintenance-agent``: run the agent of this box, or check a config file."""

from __future__ import annotations

import os
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import click

from agent import __version__
from agent.cli.errors import OneLineErrorGroup
from agent.config.connection import ENVIRONMENT
from agent.core.errors import ConfigError

if TYPE_CHECKING:
    from agent.config.schema import AgentConfig

DEFAULT_CONFIG = "/etc/maintenance-agent/config.toml"


_ENVIRONMENT_HELP = "\b\nThe [consul] keys left out of the config fall back to (as the consul command reads them):\n" + "\n".join(
    f"  {name:<24} {meaning}" for name, meaning in ENVIRONMENT.items())


@click.group(cls=OneLineErrorGroup, epilog=_ENVIRONMENT_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="maintenance-agent")
def cli() -> None:
    """The maintenance agent of one box: watches the Consul key and converges the box."""


@cli.command("check-config")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=DEFAULT_CONFIG, show_default=True)
def check_config(config_path: Path) -> None:
    """Validate a config file; exit 0 when good, 2 listing every problem when not."""
    config = _load_or_exit(config_path)
    roles = ", ".join(r.value for r in config.agent.roles)
    consul = config.consul.connection()
    tls = f", CA {consul.ca_file}" if consul.ca_file else ""
    click.echo(f"{config_path}: ok (node {config.agent.node}, roles {roles}, key {config.env_prefix}/desired, consul {consul.address}{tls})")


@cli.command("confirm-state-reset")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=DEFAULT_CONFIG, show_default=True)
def confirm_state_reset(config_path: Path) -> None:
    """Confirm that this box is as it should be and its unusable state file may start empty.

    The unusable file is kept aside (``state.json.unreadable-<time>``); a
    running agent resumes within one resync. Before confirming, make the box
    what it should be after the window (start what ran before it): the agent
    takes it as it is now.
    """
    config = _load_or_exit(config_path)
    from agent.daemon.local.statefile import confirm_reset  # the daemon side, imported only for this command

    try:
        click.echo(confirm_reset(config.agent.state_dir / "state.json"))
    except OSError as exc:
        click.echo(f"cannot reset {config.agent.state_dir / 'state.json'}: {exc.strerror or exc}", err=True)
        sys.exit(1)


@cli.command("install-files")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=DEFAULT_CONFIG, show_default=True,
              help="the box's config, at the path the unit will name")
@click.option("--root", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="where the box's / is: / on the box itself, a directory to inspect the files first")
@click.option("--executable", type=click.Path(path_type=Path), default=None,
              help="the installed maintenance-agent command (default: the one running, e.g. /opt/maintenance-agent/bin/maintenance-agent)")
@click.option("--supervisor-config", type=click.Path(path_type=Path), default=Path("/etc/supervisor/supervisord.conf"), show_default=True)
@click.option("--supervisor-include-dir", type=click.Path(path_type=Path), default=Path("/etc/supervisor/conf.d"), show_default=True)
def install_files(config_path: Path, root: Path, executable: Path | None, supervisor_config: Path, supervisor_include_dir: Path) -> None:
    """Write everything this box needs besides the package and its config, made from the config.

    The agent's unit and drop-ins, the sysusers line, the polkit rule for exactly
    the configured units, the hold drop-ins, supervisor's hook, the edge's first
    map file. Refuses a config that does not validate. Run as root, again after
    changing the config's units; then `systemd-sysusers` and `systemctl daemon-reload`.
    """
    from pathlib import PurePosixPath

    from agent.install.files import Layout, box_files, install

    config = _load_or_exit(config_path)
    command = executable or _installed_command()
    layout = Layout(PurePosixPath(config_path.absolute()), PurePosixPath(command), PurePosixPath(supervisor_config),
                    PurePosixPath(supervisor_include_dir))
    try:
        report = install(box_files(config, layout), root)
    except (OSError, ValueError) as exc:
        click.echo(f"install-files: {exc}", err=True)
        sys.exit(1)
    for line in report:
        click.echo(line)


@cli.command("supervisor-holds")
@click.option("--markers", type=click.Path(path_type=Path), required=True, help="the agent's supervisor hold markers")
@click.option("--supervisor-config", type=click.Path(path_type=Path, exists=True, dir_okay=False), required=True)
@click.option("--output", type=click.Path(path_type=Path), required=True, help="the file supervisord includes")
def supervisor_holds(markers: Path, supervisor_config: Path, output: Path) -> None:
    """Before supervisord starts (supervisor.service's ExecStartPre, as root): no autostart for held programs."""
    from agent.install.supervisor_holds import write_holds

    held, ignored = write_holds(markers, supervisor_config, output)
    click.echo(f"supervisor-holds: {len(held)} program(s) held for a maintenance window: {', '.join(held) or 'none'}", err=True)
    if ignored:
        click.echo(f"supervisor-holds: ignored markers naming no program of {supervisor_config}: "
                   f"{', '.join(map(repr, ignored))}", err=True)


@cli.command("run")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=DEFAULT_CONFIG, show_default=True)
def run(config_path: Path) -> None:
    """Run the agent until SIGTERM/SIGINT."""
    config = _load_or_exit(config_path, in_child=True)
    _lighter_imports()
    import structlog

    from agent.daemon.app import SHUTDOWN_DEADLINE_SECONDS, Agent  # imported late: check-config must not need the runtime
    from agent.daemon.local.logs import configure_logging

    _state_dir_or_exit(config_path, config.agent.state_dir)
    configure_logging(config.log.format, config.log.level)
    try:
        agent = Agent(config, log=structlog.get_logger())
    except OSError as exc:  # the metrics address is taken or not this machine's
        click.echo(f"{config_path}: metrics.listen: cannot listen on {config.metrics.listen}: {exc.strerror or exc}", err=True)
        sys.exit(2)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    agent.start()
    _release_start_up_memory()
    stop.wait()
    deadline = threading.Timer(SHUTDOWN_DEADLINE_SECONDS, _exit_now, args=(agent.log, 1, SHUTDOWN_DEADLINE_SECONDS))
    deadline.daemon = True
    deadline.start()
    agent.stop()
    _exit_now(None, 0)


def _exit_now(log: object, code: int, deadline: float = 0.0) -> None:
    """Leave now: threads still inside a call (an abandoned step, a partner notice in flight) end with the process.

    That is a kill between two actions, which a restart converges from; waiting
    for them could outlast the unit's ``TimeoutStopSec`` and lose the session release.
    """
    if log is not None:
        log.error("shutdown overran its deadline; exiting now", deadline_seconds=deadline)  # type: ignore[attr-defined]
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _installed_command() -> Path:
    """The ``maintenance-agent`` command being run, as the unit must name it (``python -m agent``: the venv's one)."""
    invoked = Path(sys.argv[0])
    if invoked.name == "maintenance-agent":
        return invoked.absolute()
    return Path(sys.executable).parent / "maintenance-agent"


def _load_or_exit(config_path: Path, in_child: bool = False) -> AgentConfig:
    """The validated config, or every problem on stderr and exit code 2.

    ``in_child``: validated in a short-lived child and held as plain objects, so the daemon never loads pydantic.
    """
    try:
        if in_child:
            from agent.config.plain import load_in_child

            return load_in_child(config_path)
        from agent.config.schema import load

        return load(config_path)
    except ConfigError as exc:
        # one problem, one line; several: every one listed under the file's name (all at once, not one per run)
        click.echo(f"{exc.path}: {exc.problems[0]}" if len(exc.problems) == 1 else str(exc), err=True)
        sys.exit(2)


def _state_dir_or_exit(config_path: Path, state_dir: Path) -> None:
    """The agent's memory must be writable before it acts: a box it cannot remember must not be stopped."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        probe = state_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        click.echo(f"{config_path}: agent.state_dir: cannot write {state_dir}: {exc.strerror or exc}", err=True)
        sys.exit(2)


def _lighter_imports() -> None:
    """Keep two optional libraries out of the daemon (about 9 MB of RSS together).

    - ``rich`` (with pygments): structlog loads it only to pretty-print
      tracebacks; the daemon logs JSON lines.
    - ``chardet`` / ``charset_normalizer``: requests (never loaded for Consul,
      only by the HTTP checks, Alertmanager and partner notices, when they
      run) loads one only to guess the encoding of answers that name no
      charset, and falls back to UTF-8 without them.
    """
    for name in ("rich", "chardet", "charset_normalizer"):
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]
    warnings.filterwarnings("ignore", message="Unable to find acceptable character detection dependency")


def _release_start_up_memory() -> None:
    """Give the heap that config validation and imports left behind back to the OS."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    libc = ctypes.util.find_library("c")
    if libc:
        try:
            ctypes.CDLL(libc).malloc_trim(0)
        except (OSError, AttributeError):
            pass  # not glibc: nothing to trim


def main() -> None:
    cli(prog_name="maintenance-agent")


if __name__ == "__main__":
    main()
