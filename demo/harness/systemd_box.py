"""A real box: systemd as PID 1 of its own namespaces, booted on an overlay of this machine's root.

The agent's unit, its sandbox, polkit's verdicts and the hold drop-ins only
mean something under the real systemd, D-Bus and polkit. This machine's PID 1
is not systemd, but systemd boots as PID 1 of a new PID namespace in a fraction
of a second, with dbus-daemon, polkitd and journald as units of the box.

What keeps the machine safe (``../shared/notes/real-systemd.md`` names the hazard:
default units booted on the shared root emptied the machine's /tmp):

- The box's root is an overlay of ``/`` whose upper and work directories are on
  a tmpfs living in the mount namespace of a small *holder* process. Every
  write the box makes lands there, nothing on the machine, and it vanishes with
  the holder. The disk survives a power cut of the box (SIGKILL of its PID 1),
  so the box can boot again with it.
- Its unit path is its own: stub targets and copies of the Debian units it asks
  for, then its ``/etc/systemd/system``. That directory and ``/tmp`` start
  empty (opaque in the overlay), so no unit enabled on this machine can start in
  a box, and nothing in the box sees the machine's temporary files.
- New PID, mount, UTS, IPC and cgroup namespaces; the box's cgroups are a
  subtree of their own in every hierarchy, so two boxes never share a unit's
  cgroup. The network is shared: boxes reach Consul on loopback.
- It is stopped by killing its own PID 1, never by name.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import cast

from demo.harness.processes import require_binary, wait_until

VENDOR_UNITS = ("/lib/systemd/system", "/usr/lib/systemd/system")
BASE_UNITS = ("dbus.socket", "dbus.service", "polkit.service", "systemd-journald.service", "systemd-journald.socket",
              "systemd-journald-dev-log.socket", "systemd-journal-flush.service")
#: The box's own tmpfiles set-up (/run/haproxy, /run/dbus... as at a Debian boot), limited to the box's own
#: /run, /var and /tmp: Debian's unit would also act on /dev and the shared kernel.
TMPFILES_UNIT = """[Unit]
Description=Create the box's volatile files and directories (tmpfiles.d, /run /var /tmp only)
DefaultDependencies=no
After=systemd-journald.service
Before=sysinit.target dbus.socket

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=systemd-tmpfiles --create --boot --prefix=/run --prefix=/var --prefix=/tmp
SuccessExitStatus=DATAERR CANTCREAT
"""
STUB_TARGETS = ("sysinit", "basic", "sockets", "timers", "paths", "slices", "local-fs", "swap", "network", "network-online",
                "network-pre", "nss-lookup", "nss-user-lookup", "remote-fs", "time-set", "time-sync", "multi-user",
                "graphical", "shutdown", "umount", "final", "emergency", "rescue", "getty")
#: The boot order of a real Debian box, so units wanted by timers.target or sockets.target start at boot too.
STUB_CHAIN = {
    "basic": "Requires=sysinit.target\nWants=sockets.target timers.target paths.target slices.target\n"
             "After=sysinit.target sockets.target timers.target paths.target slices.target\n",
    "multi-user": "Requires=basic.target\nAfter=basic.target\n",
}
#: Directories the box sees empty although the machine's have content (opaque in the overlay's upper layer).
EMPTY_IN_BOX = ("etc/systemd/system", "tmp", "var/tmp", "etc/polkit-1/rules.d", "var/lib/maintenance-agent",
                "etc/maintenance-agent", "opt/maintenance-agent", "var/log/journal")
BOX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

ENTER = r"""#!/bin/sh
# Runs in the holder's mount namespace: join this box's cgroups, then new namespaces for its PID 1.
set -e
for procs in "$@"; do echo $$ > "$procs"; done
exec unshare --pid --fork --mount --uts --ipc --cgroup --propagation private -- sh "$BOX_BOOT/inner.sh"
"""

INNER = r"""#!/bin/sh
# The box's PID 1 before it becomes systemd: mount the overlay, a small /dev, pivot into it.
set -e
disk=$BOX_DISK root=$BOX_DISK/root
mount --make-rprivate /
mkdir -p "$disk/upper" "$disk/work" "$root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$disk/upper,workdir=$disk/work" "$root"
mkdir -p "$root/etc/systemd/boxunits" "$root/oldroot"
rm -rf "$root/etc/systemd/boxunits"/*
cp "$BOX_BOOT"/units/* "$root/etc/systemd/boxunits/"
mount -t tmpfs -o mode=755,nosuid,size=4m dev "$root/dev"
for node in null zero full random urandom tty; do touch "$root/dev/$node"; mount --bind "/dev/$node" "$root/dev/$node"; done
mkdir -p "$root/dev/pts" "$root/dev/shm"
ln -s /proc/self/fd "$root/dev/fd"; ln -s pts/ptmx "$root/dev/ptmx"
ln -s /proc/self/fd/0 "$root/dev/stdin"; ln -s /proc/self/fd/1 "$root/dev/stdout"; ln -s /proc/self/fd/2 "$root/dev/stderr"
touch "$root/dev/console"; mount --bind "$BOX_BOOT/console.log" "$root/dev/console"
echo "$BOX_NAME" > "$root/etc/hostname"
cd "$root"
pivot_root . oldroot
mount -t proc proc /proc
umount -l /oldroot
rmdir /oldroot
exec env -i container=maintenance-box PATH=/usr/sbin:/usr/bin:/sbin:/bin SYSTEMD_UNIT_PATH=/etc/systemd/boxunits:/etc/systemd/system \
  /usr/lib/systemd/systemd --system --unit=box.target --log-target=journal-or-kmsg --log-level=${BOX_LOG_LEVEL:-info}
"""


class BoxError(RuntimeError):
    """A box could not boot, or a command in it failed."""


def _cgroup_hierarchies() -> list[tuple[Path, str]]:
    """Each cgroup hierarchy this process is in: (its mount point, this process's path in it)."""
    paths: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        paths[controllers] = path
    found: list[tuple[Path, str]] = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        before, after = line.split(" - ", 1)
        fstype, _, options = after.split(" ", 2)
        mount_point = Path(before.split()[4])
        if fstype == "cgroup2" and "" in paths:
            found.append((mount_point, paths[""]))
        elif fstype == "cgroup":
            names = [o for o in options.split(",") if o in _v1_controllers(paths) or o.startswith("name=")]
            key = next((k for k in paths if k and set(k.split(",")) == set(names)), None)
            if key is not None:
                found.append((mount_point, paths[key]))
    return found


def _v1_controllers(paths: dict[str, str]) -> set[str]:
    return {c for key in paths for c in key.split(",") if key}


class SystemdBox:
    """One box. ``boot()``, act through ``run``/``systemctl``/``path``, ``power_cut()``, ``boot()`` again, ``close()``."""

    _ids = itertools.count(1)

    def __init__(self, name: str, units: Sequence[str] = (), workdir: Path | None = None, layers: Sequence[Path] = ()):
        """``units``: Debian units (by name) the box may start besides D-Bus, polkit and journald, e.g. ``haproxy.service``.

        ``layers``: directory trees copied onto the box's disk before its first boot, e.g. a prepared ``/opt`` tree
        (an overlay layer cannot live inside the machine's root, which is the lower layer).
        """
        for tool in ("unshare", "nsenter", "runuser"):
            require_binary(tool)
        self.name = name
        self.units = (*BASE_UNITS, *units)
        self.layers = [Path(p) for p in layers]
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=f"maintbox-{name}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.disk = self.workdir / "disk"  # a tmpfs in the holder's mount namespace; an empty directory on the machine
        self.boot_dir = self.workdir / "boot"
        self.cgroup_name = f"maintbox-{os.getpid()}-{next(self._ids)}-{name}"
        self.holder: subprocess.Popen[bytes] | None = None
        self.launcher: subprocess.Popen[bytes] | None = None
        self.pid1 = 0
        self.boots = 0

    # -- life cycle -----------------------------------------------------------------------------------------

    def __enter__(self) -> SystemdBox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def boot(self, timeout: float = 30.0) -> None:
        """Boot (or boot again, with the same disk) and wait until ``box.target`` is reached."""
        if self.pid1:
            raise BoxError(f"box {self.name} is running (pid 1 = {self.pid1})")
        if self.holder is None:
            self._make_disk()
        self._write_boot_files()
        procs_files = [str(p / "cgroup.procs") for p in self._make_cgroups()]
        env = {"PATH": BOX_PATH, "BOX_BOOT": str(self.boot_dir), "BOX_DISK": str(self.disk), "BOX_NAME": self.name,
               "BOX_LOG_LEVEL": os.environ.get("BOX_LOG_LEVEL", "info")}
        assert self.holder is not None
        self.launcher = subprocess.Popen(
            ["nsenter", "-t", str(self.holder.pid), "-m", "--", "sh", str(self.boot_dir / "enter.sh"), *procs_files],
            env=env, stdin=subprocess.DEVNULL, stdout=open(self.boot_dir / "launcher.log", "ab"), stderr=subprocess.STDOUT)
        try:
            self.pid1 = cast(int, wait_until(self._find_pid1, 10, what=f"box {self.name}'s PID 1"))
            wait_until(lambda: self._is_up(), timeout, interval=0.05, what=f"box {self.name} to reach box.target")
        except (BoxError, TimeoutError, OSError, ValueError) as exc:
            log = (self.boot_dir / "launcher.log").read_text(errors="replace")[-2000:]
            self.power_cut()
            raise BoxError(f"box {self.name} did not boot: {exc}\n{log}") from None
        self.boots += 1

    def power_cut(self) -> None:
        """SIGKILL the box's PID 1: everything in it dies at once; its disk stays for the next boot."""
        if self.pid1:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid1, signal.SIGKILL)
        if self.launcher is not None:
            try:
                self.launcher.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.launcher.kill()
                self.launcher.wait(timeout=5)
        self.pid1 = 0
        self.launcher = None
        self._remove_cgroups()

    def close(self) -> None:
        """Power cut, then drop the disk (the holder's tmpfs) and every file the box had on the machine."""
        self.power_cut()
        if self.holder is not None:
            self.holder.kill()
            self.holder.wait(timeout=10)
            self.holder = None
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- acting in the box ----------------------------------------------------------------------------------

    def run(self, *argv: str, user: str | None = None, check: bool = True, timeout: float = 60.0, stdin: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command inside the box (its namespaces, its root), as root or as ``user``."""
        if not self.pid1:
            raise BoxError(f"box {self.name} is not running")
        command = [*(("runuser", "-u", user, "--") if user else ()), *argv]
        box_env = {"PATH": BOX_PATH, "LANG": "C.UTF-8", "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0", **(env or {})}
        result = subprocess.run(["nsenter", "-t", str(self.pid1), "-m", "-p", "-u", "-i", "-C", "--", *command],
                                env=box_env, input=stdin, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise BoxError(f"in box {self.name}: {' '.join(command)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
        return result

    def systemctl(self, *args: str, user: str | None = None, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """``systemctl`` in the box; a failure to start something says what the units' journal says."""
        try:
            return self.run("systemctl", "--no-pager", *args, user=user, check=check, timeout=timeout)
        except BoxError as exc:
            units = [a for a in args[1:] if not a.startswith("-")]
            journal = self.run("journalctl", "--no-pager", "-n", "25", *(f"--unit={u}" for u in units), check=False).stdout
            raise BoxError(f"{exc}\n-- journal of {', '.join(units)}:\n{journal}") from None

    def unit_property(self, unit: str, prop: str) -> str:
        return self.systemctl("show", f"--property={prop}", "--value", unit).stdout.strip()

    def main_pid(self, unit: str) -> int:
        """The unit's main process as seen from the machine (0 when it has none)."""
        inner = int(self.unit_property(unit, "MainPID") or 0)
        return self.outer_pid(inner) if inner else 0

    def outer_pid(self, inner_pid: int) -> int:
        """A PID of the box as this machine numbers it (for signals and /proc)."""
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                status = (entry / "status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("NSpid:"):
                    pids = line.split()[1:]
                    if len(pids) >= 2 and pids[-1] == str(inner_pid) and self._in_box(entry.name):
                        return int(entry.name)
        return 0

    def path(self, path: str) -> Path:
        """A path of the box's file system, reachable from the machine while the box runs (and before its first boot)."""
        relative = path.lstrip("/")
        if self.pid1:
            return Path(f"/proc/{self.pid1}/root") / relative
        if self.holder is None:
            self._make_disk()
        assert self.holder is not None
        return Path(f"/proc/{self.holder.pid}/root") / str(self.disk).lstrip("/") / "upper" / relative

    def write(self, path: str, content: str, mode: int = 0o644) -> None:
        """Write a file into the box as root (parent directories made)."""
        target = self.path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        target.chmod(mode)

    def journal(self, *args: str) -> str:
        return self.run("journalctl", "--no-pager", *args).stdout

    # -- internals ------------------------------------------------------------------------------------------

    def _make_disk(self) -> None:
        self.disk.mkdir(parents=True, exist_ok=True)
        holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
             'mount -t tmpfs -o mode=0755,size=4g maintbox "$1" && echo ready && exec sleep infinity', "holder", str(self.disk)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert holder.stdout is not None
        if holder.stdout.readline().strip() != b"ready":
            holder.kill()
            err = holder.communicate(timeout=5)[1].decode(errors="replace")
            raise BoxError(f"box {self.name}: cannot mount its disk (a tmpfs in a private mount namespace): {err}")
        self.holder = holder
        upper = Path(f"/proc/{holder.pid}/root") / str(self.disk).lstrip("/") / "upper"
        for relative in EMPTY_IN_BOX:
            folder = upper / relative
            folder.mkdir(parents=True, exist_ok=True)
            os.setxattr(folder, "trusted.overlay.opaque", b"y")
        for layer in self.layers:
            shutil.copytree(layer, upper, symlinks=True, dirs_exist_ok=True)

    def _write_boot_files(self) -> None:
        units = self.boot_dir / "units"
        shutil.rmtree(units, ignore_errors=True)
        units.mkdir(parents=True)
        (self.boot_dir / "enter.sh").write_text(ENTER)
        (self.boot_dir / "inner.sh").write_text(INNER)
        (self.boot_dir / "console.log").touch()
        (units / "systemd-tmpfiles-setup.service").write_text(TMPFILES_UNIT)
        base = " ".join((*BASE_UNITS, "systemd-tmpfiles-setup.service"))
        (units / "box.target").write_text(f"[Unit]\nDescription=the box\nDefaultDependencies=no\nWants={base} multi-user.target\n"
                                          f"After={base} multi-user.target\nAllowIsolate=yes\n")
        for target in STUB_TARGETS:
            (units / f"{target}.target").write_text(f"[Unit]\nDescription={target} (stub of the box)\nDefaultDependencies=no\n"
                                                    f"{STUB_CHAIN.get(target, '')}")
        for unit in self.units:
            source = next((Path(d) / unit for d in VENDOR_UNITS if (Path(d) / unit).is_file()), None)
            if source is None:
                raise BoxError(f"box {self.name}: Debian unit {unit} is not installed on this machine (run scripts/install-deps)")
            shutil.copyfile(source, units / unit)

    def _make_cgroups(self) -> list[Path]:
        made = []
        for mount_point, own_path in _cgroup_hierarchies():
            folder = mount_point / own_path.lstrip("/") / self.cgroup_name
            folder.mkdir(exist_ok=True)
            for inherited in ("cpuset.cpus", "cpuset.mems"):
                if (folder / inherited).exists() and not (folder / inherited).read_text().strip():
                    (folder / inherited).write_text((folder.parent / inherited).read_text())
            made.append(folder)
        return made

    def _remove_cgroups(self) -> None:
        for mount_point, own_path in _cgroup_hierarchies():
            top = mount_point / own_path.lstrip("/") / self.cgroup_name
            if not top.exists():
                continue
            for _ in range(100):
                for folder in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
                    with contextlib.suppress(OSError):
                        folder.rmdir()
                with contextlib.suppress(OSError):
                    top.rmdir()
                if not top.exists():
                    break
                time.sleep(0.05)

    def _find_pid1(self) -> int:
        """The box's PID 1: the child of ``unshare --fork`` (the launcher after its execs)."""
        assert self.launcher is not None
        if self.launcher.poll() is not None:
            raise BoxError(f"box {self.name}: the launcher exited {self.launcher.returncode}")
        children = Path(f"/proc/{self.launcher.pid}/task/{self.launcher.pid}/children").read_text().split()
        if not children:
            return 0
        pid = int(children[0])
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        return pid if comm == "systemd" else 0

    def _is_up(self) -> bool:
        if self.launcher is None or self.launcher.poll() is not None:
            raise BoxError(f"box {self.name}: PID 1 exited")
        result = self.run("systemctl", "is-active", "box.target", check=False, timeout=10)
        return result.stdout.strip() == "active"

    def _in_box(self, pid: str) -> bool:
        try:
            return os.readlink(f"/proc/{pid}/ns/pid") == os.readlink(f"/proc/{self.pid1}/ns/pid")
        except OSError:
            return False


@contextlib.contextmanager
def booted(name: str, units: Sequence[str] = (), layers: Sequence[Path] = (), workdir: Path | None = None) -> Iterator[SystemdBox]:
    """A booted box that is always powered off and removed, also when the test fails."""
    box = SystemdBox(name, units, workdir=workdir, layers=layers)
    try:
        box.boot()
        yield box
    finally:
        box.close()
