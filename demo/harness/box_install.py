"""The agent installed as an operator installs it, for real boxes: wheels, and a venv under /opt from Debian's python3.

An operator builds wheels, makes a venv with the box's own ``/usr/bin/python3``
in ``/opt/maintenance-agent`` and installs the wheel there (README, "Install
on a box"; ``tests/integration/test_real_box_install.py`` runs exactly those
commands in a box). For the other real-box tests the same venv is built once
per source tree, at that very path inside a private mount namespace whose
``/opt`` is a tmpfs (nothing is written to the machine's /opt), copied into
``.cache/box-venv/<hash>/`` and laid over each box's root as an overlay layer.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

from demo.harness.processes import PROJECT

VENV = "/opt/maintenance-agent"
CACHE = PROJECT / ".cache"
KEEP_LAYERS = 2


def build_wheels(dest: Path) -> list[Path]:
    """This checkout as a wheel, with its dependencies' wheels (cached across runs), in ``dest``."""
    deps = CACHE / "box-wheels"
    stamp = deps / ".pyproject.sha256"
    pyproject = hashlib.sha256((PROJECT / "pyproject.toml").read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text() != pyproject:
        shutil.rmtree(deps, ignore_errors=True)
        _pip("wheel", "--quiet", "--wheel-dir", str(deps), str(PROJECT))
        for own in deps.glob("maintenance_agent-*.whl"):
            own.unlink()
        stamp.write_text(pyproject)
    dest.mkdir(parents=True, exist_ok=True)
    for wheel in deps.glob("*.whl"):
        shutil.copy2(wheel, dest / wheel.name)
    _pip("wheel", "--quiet", "--no-deps", "--wheel-dir", str(dest), str(PROJECT))
    return sorted(dest.glob("*.whl"))


def venv_layer(wheels: list[Path]) -> Path:
    """A directory holding ``opt/maintenance-agent``: the venv the README makes, from ``wheels``."""
    key = hashlib.sha256(b"".join(hashlib.sha256(w.read_bytes()).digest() for w in sorted(wheels))).hexdigest()[:16]
    layers = CACHE / "box-venv"
    layer = layers / key
    if (layer / "opt/maintenance-agent/bin/maintenance-agent").exists():
        return layer
    shutil.rmtree(layer, ignore_errors=True)
    (layer / "opt").mkdir(parents=True)
    wheel_dir = wheels[0].parent
    script = (f"set -e; mount -t tmpfs -o mode=0755 venv /opt; /usr/bin/python3 -m venv {VENV}; "
              f"{VENV}/bin/pip install --quiet --disable-pip-version-check --no-index --find-links {wheel_dir} maintenance-agent; "
              f"cp -a {VENV} {layer}/opt/")
    result = subprocess.run(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script],
                            capture_output=True, text=True, timeout=600, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    if result.returncode != 0:
        shutil.rmtree(layer, ignore_errors=True)
        raise RuntimeError(f"cannot build the box venv (Debian's python3-venv installed? scripts/install-deps):\n{result.stderr[-3000:]}")
    old = sorted((p for p in layers.iterdir() if p != layer), key=lambda p: p.stat().st_mtime)
    for stale in old[: max(0, len(old) - (KEEP_LAYERS - 1))]:
        shutil.rmtree(stale, ignore_errors=True)
    return layer


def _pip(*args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", *args, "--disable-pip-version-check"], capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"pip {' '.join(args[:2])} failed:\n{result.stderr[-3000:]}")
