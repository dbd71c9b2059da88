"""Which alerts are firing, asked of Prometheus (``/api/v1/alerts``) or Alertmanager (``/api/v2/alerts``).

The alert gate needs one answer: the labels of every alert firing now. From
Prometheus, the alerts its rules hold in state ``firing`` (``pending`` ones
have not fired yet); from Alertmanager, every alert it holds that is not
resolved, silenced or not (which silences count is the gate's business, not
Alertmanager's). No answer is an ``AlertSourceUnavailable``: the gate holds on
it, it never reads it as "nothing fires".
"""

from __future__ import annotations

from typing import Any

from agent.core.errors import TemporaryError


class AlertSourceUnavailable(TemporaryError):
    """Prometheus or Alertmanager did not answer, or not with a list of alerts."""


class FiringAlerts:
    """``firing()``: the labels of each alert firing now, from ``source`` at ``url``."""

    def __init__(self, source: str, url: str, timeout: float = 5.0):
        if source not in ("prometheus", "alertmanager"):
            raise ValueError(f"unknown alert source {source!r}")
        self.source = source
        self.url = url.rstrip("/")
        self.timeout = timeout

    def describe(self) -> str:
        return f"{'Prometheus' if self.source == 'prometheus' else 'Alertmanager'} at {self.url}"

    def firing(self) -> list[dict[str, str]]:
        if self.source == "prometheus":
            doc = self._get("/api/v1/alerts", {})
            alerts = doc.get("data", {}).get("alerts") if isinstance(doc, dict) and doc.get("status") == "success" else None
            if not isinstance(alerts, list):
                raise AlertSourceUnavailable(f"{self.describe()} answered without a list of alerts")
            return [_labels(a) for a in alerts if isinstance(a, dict) and a.get("state") == "firing"]
        doc = self._get("/api/v2/alerts", {"active": "true", "silenced": "true", "inhibited": "true", "unprocessed": "true"})
        if not isinstance(doc, list):
            raise AlertSourceUnavailable(f"{self.describe()} answered without a list of alerts")
        return [_labels(a) for a in doc if isinstance(a, dict)]

    def _get(self, path: str, params: dict[str, str]) -> Any:
        import requests  # here: an agent that asks no alert source never loads it (~8 MB)

        try:
            response = requests.get(f"{self.url}{path}", params=params, timeout=self.timeout)
        except requests.RequestException as exc:
            raise AlertSourceUnavailable(f"{self.describe()} unreachable: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise AlertSourceUnavailable(f"{self.describe()} answered HTTP {response.status_code}: {response.text[:200]}")
        try:
            return response.json()
        except ValueError:
            raise AlertSourceUnavailable(f"{self.describe()} answered something that is not JSON") from None


def _labels(alert: dict[str, Any]) -> dict[str, str]:
    labels = alert.get("labels")
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}
