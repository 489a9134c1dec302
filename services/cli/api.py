"""A small client of the desk's alert API (services/desk/api.py), over httpx.

The token is sent as a bearer token and never printed; errors carry the API's own
`error` code and message, not the request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import quote

import httpx

TIMEOUT_SECONDS = 15.0
PAGE = 500  # the API's largest page


class ApiError(RuntimeError):
    """The API refused or could not be reached; `status` is 0 when nothing answered."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Listing:
    """Alerts as listed, and the desk's time of the first page (countdowns count from it)."""

    alerts: list[dict[str, Any]]
    as_of: str | None


class AlertApi:
    """`GET /v1/alerts`, `GET /v1/alerts/{id}`, `POST /v1/alerts/{id}/ack|resolve`."""

    def __init__(self, base_url: str, token: str | None, *, page: int = PAGE) -> None:
        self.page = page
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=TIMEOUT_SECONDS,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self._client.close()

    def list(self, filters: dict[str, str | None], limit: int) -> list[dict[str, Any]]:
        """Return up to `limit` alerts, newest first (or as `filters["order"]` says)."""
        return self.listing(filters, limit).alerts

    def listing(self, filters: dict[str, str | None], limit: int) -> Listing:
        """Return up to `limit` alerts and the desk's time of the answer.

        `filters` are the API's (`order`, `status`, `rule`, `severity`, `area`,
        `subject_kind`, `subject_id`, `trigger_id`); pages are followed by their cursor
        until `limit` alerts or the last page.
        """
        params = {k: v for k, v in filters.items() if v is not None}
        alerts: list[dict[str, Any]] = []
        cursor: str | None = None
        as_of: str | None = None
        while len(alerts) < limit:
            page_size = min(self.page, limit - len(alerts))
            query = {**params, "limit": str(page_size)} | ({"cursor": cursor} if cursor else {})
            body = self._call("GET", "/v1/alerts", params=query)
            as_of = as_of or body.get("as_of")
            alerts.extend(body["alerts"])
            cursor = body.get("next_cursor")
            if not cursor or not body["alerts"]:
                break
        return Listing(alerts[:limit], as_of)

    def get(self, alert_id: str) -> dict[str, Any]:
        """Return one alert with its timeline."""
        return self._call("GET", f"/v1/alerts/{_segment(alert_id)}")

    def act(
        self,
        alert_id: str,
        action: str,
        *,
        by: str | None = None,
        note: str | None = None,
        reason: str | None = None,
    ) -> dict[str, Any]:
        """Acknowledge (`ack`) or resolve (`resolve`, with its reason); the API answers 202."""
        given = (("by", by), ("note", note), ("reason", reason))
        body = {k: v for k, v in given if v is not None}
        return self._call("POST", f"/v1/alerts/{_segment(alert_id)}/{action}", json=body)

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:  # noqa: ANN401 - passed to httpx
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(
                0, f"cannot reach {self._client.base_url}: {type(exc).__name__}"
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.is_success and isinstance(body, dict):
            return body
        if isinstance(body, dict) and "message" in body:
            message = f"{body.get('error', 'error')}: {body['message']}"
        else:
            message = response.reason_phrase or "unexpected answer"
        raise ApiError(response.status_code, f"{response.status_code} {message}")


def _segment(alert_id: str) -> str:
    """Return an alert id safe to put in a path (ids are hex, but input is input)."""
    return quote(alert_id, safe="")
