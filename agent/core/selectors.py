"""Label matchers, as Prometheus writes them: ``severity="critical", env=~"prod|mock"``.

The alert gate asks "is any alert matching this selector firing?" and leaves
out what the window's own silence covers. Both are label matchers with
Prometheus' meaning: ``=``, ``!=``, ``=~``, ``!~``; a regex matches the whole
value; a missing label is the empty string. Parsed once (``check-config``
refuses a selector that does not parse) and matched here, so Prometheus and
Alertmanager answers are judged by the same rule.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

_MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*")\s*(,|$)')
OPERATORS = ("=", "!=", "=~", "!~")


class SelectorError(ValueError):
    """A selector that does not parse; the message says where and what was expected."""


@dataclass(frozen=True)
class LabelMatcher:
    name: str
    op: str
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op in ("=", "!="):
            return (actual == self.value) == (self.op == "=")
        return (re.fullmatch(self.value, actual) is not None) == (self.op == "=~")

    def __str__(self) -> str:
        return f"{self.name}{self.op}{json.dumps(self.value)}"


def parse_selector(text: str) -> tuple[LabelMatcher, ...]:
    """``severity="critical", env=~"prod|mock"`` (braces optional) as matchers; ``SelectorError`` when it does not parse."""
    body = text.strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1]
    matchers: list[LabelMatcher] = []
    position = 0
    while position < len(body) and body[position:].strip():
        found = _MATCHER.match(body, position)
        if found is None:
            raise SelectorError(f"expected label matchers like severity=\"critical\", env=~\"prod|mock\" (at {body[position:][:30]!r})")
        name, op, quoted, _ = found.groups()
        try:
            value = json.loads(quoted)
        except ValueError:
            raise SelectorError(f"bad quoted value {quoted!r}") from None
        if op in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as exc:
                raise SelectorError(f"{name}{op}{quoted}: not a regular expression ({exc})") from None
        matchers.append(LabelMatcher(name, op, value))
        position = found.end()
    if not matchers:
        raise SelectorError("expected at least one label matcher, e.g. severity=\"critical\"")
    return tuple(matchers)


def matches_all(matchers: Iterable[LabelMatcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


def render(matchers: Iterable[LabelMatcher]) -> str:
    return "{" + ",".join(str(m) for m in matchers) + "}"
