"""The agent's systemd unit and sysusers line, rendered for where the package is installed.

``deploy/systemd/`` holds these files rendered for the documented install
(a venv in ``/opt/maintenance-agent``, the config in ``/etc/maintenance-agent``);
a unit test keeps them identical to what ``install-files`` writes.
"""

from __future__ import annotations

from pathlib import PurePosixPath

USER = "maintenance-agent"
DEFAULT_EXECUTABLE = PurePosixPath("/opt/maintenance-agent/bin/maintenance-agent")
DEFAULT_CONFIG = PurePosixPath("/etc/maintenance-agent/config.toml")

UNIT = """\
# maintenance-agent: one per box. Written by `maintenance-agent install-files`
# (README, "Install on a box"); then: systemctl enable --now maintenance-agent
[Unit]
Description=maintenance-agent (watches the Consul maintenance key and converges this box)
Wants=network-online.target consul.service
After=network-online.target consul.service

[Service]
# A dedicated user (sysusers.d/maintenance-agent.conf), never root. Worker and
# scheduler boxes start and stop exactly their configured units through
# systemd's D-Bus API, as the polkit rule install-files writes allows; a
# window's hold is a marker in the state directory that the units' own
# drop-ins honour (docs/holds.md). Edge boxes reach HAProxy through its
# agent socket (group maintenance-agent) and keep the map in the state directory.
User=maintenance-agent
Group=maintenance-agent
Type=notify
NotifyAccess=main
ExecStartPre={executable} check-config --config {config}
ExecStart={executable} run --config {config}
# The reconcile loop pings the watchdog at half this interval and before each
# step; a hung loop is restarted. Keep it above the longest single step
# timeout (worker/scheduler/hooks timeout_seconds, 60 s by default).
WatchdogSec=90
Restart=always
RestartSec=5
# Stopping releases the Consul session (the status key disappears); it never
# reverts maintenance: a restart converges to the intent instead. The agent
# starts no new action once asked to stop, gives the call in flight 8 s and
# exits by 25 s whatever happens, so this limit is never what ends it.
TimeoutStopSec=30
KillMode=mixed

StateDirectory=maintenance-agent
StateDirectoryMode=0750
ConfigurationDirectory=maintenance-agent
Environment=PYTHONUNBUFFERED=1
# Fewer malloc arenas for a mostly idle, few-threaded daemon: smaller RSS.
Environment=MALLOC_ARENA_MAX=2

# Hardening. The D-Bus system bus and HAProxy's socket are AF_UNIX sockets,
# which need no write access to the file system.
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
CapabilityBoundingSet=
AmbientCapabilities=
UMask=0027
MemoryMax=256M

[Install]
WantedBy=multi-user.target
"""

SYSUSERS = """\
# systemd-sysusers: the dedicated system user the agent runs as (written by `maintenance-agent install-files`).
u maintenance-agent - "maintenance-agent (planned maintenance daemon)" /var/lib/maintenance-agent /usr/sbin/nologin
"""


def agent_unit(executable: PurePosixPath = DEFAULT_EXECUTABLE, config: PurePosixPath = DEFAULT_CONFIG) -> str:
    for path in (executable, config):
        if not path.is_absolute() or any(ch.isspace() or ch in "\"'\\%$" for ch in str(path)):
            raise ValueError(f"{path}: expected an absolute path without spaces, quotes, % or $ (it goes into a unit file)")
    return UNIT.format(executable=executable, config=config)
