"""The polkit rule of a worker or scheduler box: exactly the configured units, exactly start and stop.

systemd asks polkit ``org.freedesktop.systemd1.manage-units`` with the unit
and the verb, so that action can be limited to a unit; every other systemd
action (``manage-unit-files``: enable, disable, mask; ``reload-daemon``;
``set-environment`` ...) carries no unit name and is refused outright for the
agent's user. The agent needs none of them: a window's hold is a marker file
(``agent.core.holds``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from agent.config.schema import AgentConfig
from agent.core.holds import unit_pattern
from agent.install.unit import USER


@dataclass(frozen=True)
class Allowed:
    """Units matching ``pattern`` (a name or a glob) may be acted on with ``verbs``; ``why`` is the rule's comment."""

    pattern: str
    verbs: tuple[str, ...]
    why: str


def allowed_units(config: AgentConfig) -> list[Allowed]:
    """What the box's config lets its agent do to systemd units (empty when no role uses the systemd backend)."""
    allowed: list[Allowed] = []
    if config.worker is not None and config.worker.backend == "systemd":
        allowed += [Allowed(name, ("start", "stop"), "[worker] services") for name in config.worker.services]
    if config.scheduler is not None and config.scheduler.backend == "systemd":
        for job in config.scheduler.jobs:
            allowed.append(Allowed(job, ("start", "stop"), "[scheduler] jobs"))
            if job.endswith(".timer"):
                # A run still going at the drain timeout is stopped: the service the timer triggers (Unit= default).
                allowed.append(Allowed(job.removesuffix(".timer") + ".service", ("stop",), f"what {job} triggers, after the drain timeout"))
    return allowed


def render_rule(allowed: Sequence[Allowed], source: str) -> str:
    entries = "\n".join(
        f"        {{unit: /^{unit_pattern(a.pattern)}$/, verbs: {json.dumps(list(a.verbs))}}},  // {a.pattern}: {a.why}" for a in allowed)
    return f"""\
// Written by `maintenance-agent install-files` from {source}: do not edit, run it again.
// The {USER} user may start and stop exactly the units its config names, and
// nothing else of systemd: no other unit, no enable, disable or mask (which polkit
// cannot limit to a unit), no daemon-reload. A window's hold is a marker file that
// the units' own drop-ins honour (docs/holds.md).
// One closure: a global would be shared with every other rules file polkitd loads (one JavaScript context).
polkit.addRule((function() {{
    var allowed = [
{entries}
    ];
    return function(action, subject) {{
        if (subject.user != "{USER}") {{
            return polkit.Result.NOT_HANDLED;
        }}
        if (action.id == "org.freedesktop.systemd1.manage-units") {{
            var unit = action.lookup("unit");
            var verb = action.lookup("verb");
            if (typeof unit != "string" || typeof verb != "string") {{
                return polkit.Result.NO;
            }}
            for (var i = 0; i < allowed.length; i++) {{
                if (allowed[i].unit.test(unit) && allowed[i].verbs.indexOf(verb) >= 0) {{
                    return polkit.Result.YES;
                }}
            }}
            return polkit.Result.NO;
        }}
        if (action.id.indexOf("org.freedesktop.systemd1.") == 0) {{
            return polkit.Result.NO;
        }}
        return polkit.Result.NOT_HANDLED;
    }};
}})());
"""
