"""Alertmanager's v2 API: the silence calls the lease needs and the alert list the alert gate reads, each with a timeout."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from agent.core.errors import TemporaryError

if TYPE_CHECKING:  # imported where used: an agent that holds no silence never loads requests (~8 MB)
    import requests


class AlertmanagerError(TemporaryError):
    """Alertmanager did not answer, or refused a request."""


def iso_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class AlertmanagerClient:
    """The calls of Alertmanager's v2 API the lease and the alert gate need; every failure is an ``AlertmanagerError``."""

    def __init__(self, url: str, timeout: float = 5.0):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        import requests

        try:
            response = requests.request(method, f"{self.url}{path}", timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise AlertmanagerError(f"Alertmanager at {self.url} unreachable ({method} {path}): {type(exc).__name__}") from None
        return response

    def put_silence(self, matchers: list[dict[str, Any]], starts_at: datetime, ends_at: datetime, created_by: str, comment: str,
                    silence_id: str | None = None) -> str:
        """Create (or, with ``silence_id``, extend) a silence; returns its id (a new one if the old had expired)."""
        body: dict[str, Any] = {"matchers": matchers, "startsAt": iso_time(starts_at), "endsAt": iso_time(ends_at),
                                "createdBy": created_by, "comment": comment}
        if silence_id:
            body["id"] = silence_id
        response = self._request("POST", "/api/v2/silences", json=body)
        if response.status_code != 200:
            raise AlertmanagerError(f"Alertmanager refused the silence: HTTP {response.status_code} {response.text[:200]}")
        return str(response.json()["silenceID"])

    def silence_start(self, silence_id: str) -> str:
        """The silence's ``startsAt`` as Alertmanager holds it.

        Alertmanager moves a new silence's start to its own clock when the one asked for is already past, and
        extends an active silence in place only when the start it is sent has the same second: the lease
        must extend with Alertmanager's start, not with the one it asked for.
        """
        response = self._request("GET", f"/api/v2/silence/{silence_id}")
        if response.status_code != 200:
            raise AlertmanagerError(f"Alertmanager: HTTP {response.status_code} reading silence {silence_id}: {response.text[:200]}")
        return str(response.json()["startsAt"])

    def delete_silence(self, silence_id: str) -> None:
        """Expire the silence now; one that is gone or already expired is fine."""
        response = self._request("DELETE", f"/api/v2/silence/{silence_id}")
        if response.status_code == 200 or response.status_code == 404 or "already expired" in response.text:
            return
        raise AlertmanagerError(f"Alertmanager: HTTP {response.status_code} deleting silence {silence_id}: {response.text[:200]}")
