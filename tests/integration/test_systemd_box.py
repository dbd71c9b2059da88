"""The real-box harness itself: a box is systemd as PID 1 of its own namespaces, and leaves nothing on the machine."""

from __future__ import annotations

import os
from pathlib import Path

from demo.harness.systemd_box import SystemdBox


def _left(box: SystemdBox, pid_namespace: str) -> dict[str, object]:
    """What of the box is still on the machine: mounts, processes, cgroups, files (other tests may run meanwhile)."""
    processes = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.readlink(entry / "ns/pid") == pid_namespace:
                processes.append(entry.name)
        except OSError:
            pass
    return {"mounts": [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if str(box.workdir) in line],
            "processes": processes, "cgroups": sorted(str(p) for p in Path("/sys/fs/cgroup").rglob(box.cgroup_name)),
            "files": box.workdir.exists(), "holder": box.holder is not None}


def test_a_box_boots_systemd_with_dbus_and_polkit_survives_a_power_cut_and_leaves_nothing(tmp_path: Path) -> None:
    box = SystemdBox("harness", workdir=tmp_path / "box")
    etc = sorted(os.listdir("/etc/systemd/system"))
    try:
        box.boot()
        assert Path(f"/proc/{box.pid1}/comm").read_text().strip() == "systemd"
        assert box.run("cat", "/proc/1/comm").stdout.strip() == "systemd", "PID 1 of its own PID namespace"
        assert os.readlink(f"/proc/{box.pid1}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
        assert os.readlink(f"/proc/{box.pid1}/ns/net") == os.readlink("/proc/self/ns/net"), "loopback shared with the machine"
        assert box.run("hostname").stdout.strip() == "harness"
        for unit in ("dbus.service", "polkit.service", "systemd-journald.service"):
            assert box.unit_property(unit, "ActiveState") == "active", unit
        assert box.run("ls", "/tmp", "/etc/systemd/system").stdout.split() == ["/etc/systemd/system:", "/tmp:"], \
            "the machine's /tmp and enabled units are not the box's"
        box.write("/var/lib/kept", "on the box's disk\n")
        box.run("sh", "-c", "echo box-only > /tmp/written-in-the-box")
        assert not Path("/tmp/written-in-the-box").exists() and not Path("/var/lib/kept").exists()

        first = box.pid1
        first_namespace = os.readlink(f"/proc/{first}/ns/pid")
        box.power_cut()
        assert not Path(f"/proc/{first}").exists()
        box.boot()
        assert box.path("/var/lib/kept").read_text() == "on the box's disk\n", "the disk survives a power cut"
        namespace = os.readlink(f"/proc/{box.pid1}/ns/pid")
    finally:
        box.close()
    nothing = {"mounts": [], "processes": [], "cgroups": [], "files": False, "holder": False}
    assert _left(box, namespace) == nothing and _left(box, first_namespace) == nothing
    assert sorted(os.listdir("/etc/systemd/system")) == etc
