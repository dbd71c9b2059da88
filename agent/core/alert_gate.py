"""The alert gate's verdict: may traffic come back, given the alerts firing now and an operator's override?

Pure, so every case is a row of a table test; the step
(``agent.daemon.steps.alert_gate``) asks Prometheus and Consul and acts on
the answer. An alert counts when it matches the selector (``severity="critical"``
in this environment) and the window's own silence does not cover it (the alerts
the window fires on purpose: backends down, workers stopped). An override
counts for the window it was given in: it was written at an intent index at or
after the one the gate was armed with (the window's maintenance intent), so
last week's override never opens this week's gate.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

from agent.core.selectors import LabelMatcher, matches_all

SHOWN = 5
"""How many firing alerts ``blocked_on`` names; the rest are counted."""


@dataclass(frozen=True)
class Override:
    """``<prefix>/<env>/alert-gate/override``: an operator lets traffic back without the gate, for one window."""

    intent_index: int  # the desired key's index when it was written: it counts for the window armed at or before it
    reason: str
    by: str
    at: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, raw: bytes | str) -> Override:
        doc = json.loads(raw)
        return cls(intent_index=int(doc["intent_index"]), reason=str(doc["reason"]), by=str(doc.get("by", "")), at=str(doc.get("at", "")))

    def covers(self, armed_for: int) -> bool:
        return self.intent_index >= armed_for


def describe_alert(labels: Mapping[str, str]) -> str:
    """``ReplicaLagging{instance="sql-b"}``: the alert's name and the labels that tell it apart (not env or severity)."""
    rest = {k: v for k, v in sorted(labels.items()) if k not in ("alertname", "env", "severity")}
    inner = ",".join(f'{k}="{v}"' for k, v in list(rest.items())[:3])
    return labels.get("alertname", "unnamed alert") + (f"{{{inner}}}" if inner else "")


def blocking(firing: Iterable[Mapping[str, str]], selector: Sequence[LabelMatcher], silenced: Sequence[LabelMatcher]) -> list[str]:
    """The firing alerts that hold traffic: matching ``selector``, not covered by the window's silence ``silenced``."""
    names = {describe_alert(a) for a in firing if matches_all(selector, a) and not (silenced and matches_all(silenced, a))}
    return sorted(names)


def blocked_on(alerts: Sequence[str], source: str) -> str:
    shown = ", ".join(alerts[:SHOWN]) + (f" and {len(alerts) - SHOWN} more" if len(alerts) > SHOWN else "")
    return (f"alert gate: {len(alerts)} alert(s) firing ({source}): {shown}; traffic stays on the maintenance page "
            f"(override for this window: maintctl alert-gate override --reason ...)")
