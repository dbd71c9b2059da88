"""The [alert_gate] table: traffic comes back only when no alert that matters is firing."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from agent.config.fields import FrozenModel, HttpUrlText
from agent.core.selectors import SelectorError, parse_selector

GatedRole = Literal["edge", "web"]


def _edge_only() -> list[GatedRole]:
    return ["edge"]


class AlertGateSection(FrozenModel):
    """Before the edge restores outside traffic (and, with ``roles`` naming web, before web leaves Consul
    maintenance), ask Prometheus (or Alertmanager) whether an alert matching ``selector`` fires in this
    environment; alerts the window's own silence covers ([alertmanager] matchers) do not count.

    An unanswered question holds too: the gate opens only on an answer, or an operator's override for the window.
    """

    source: Literal["prometheus", "alertmanager"] = "prometheus"
    url: HttpUrlText
    selector: str = Field(default='severity="critical"', description="label matchers; env=\"<environment>\" is added unless "
                                                                      "the selector names env")
    roles: list[GatedRole] = Field(default_factory=_edge_only, min_length=1)
    timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    recheck_seconds: float = Field(default=15.0, gt=0, le=600)

    @field_validator("url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("selector")
    @classmethod
    def _parses(cls, value: str) -> str:
        try:
            parse_selector(value)
        except SelectorError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("roles")
    @classmethod
    def _unique(cls, roles: list[GatedRole]) -> list[GatedRole]:
        if len(set(roles)) != len(roles):
            raise ValueError("a role is listed twice")
        return roles
