"""A small client of the notify service's alert API (services/notify/http.py), over httpx.

The token is sent as a bearer token and never printed; errors carry the API's own
`error` code and message, not the request.
"""

from __future__ import annotations

from typing import Any, Self
from urllib.parse import quote

import httpx

TIMEOUT_SECONDS = 15.0


class ApiError(RuntimeError):
    """The API refused or could not be reached; `status` is 0 when nothing answered."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class AlertApi:
    """`GET /v1/alerts`, `GET /v1/alerts/{id}`, `POST /v1/alerts/{id}/ack|resolve`."""

    def __init__(self, base_url: str, token: str | None, *, transport: Any = None) -> None:  # noqa: ANN401 - an httpx transport, for tests
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=TIMEOUT_SECONDS,
            transport=transport,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self._client.close()

    def list(self, status: str | None = None) -> list[dict[str, Any]]:
        """Return the alerts, newest first, optionally of one status."""
        params = {"status": status} if status else {}
        body = self._call("GET", "/v1/alerts", params=params)
        alerts: list[dict[str, Any]] = body["alerts"]
        return alerts

    def get(self, alert_id: str) -> dict[str, Any]:
        """Return one alert with its timeline."""
        return self._call("GET", f"/v1/alerts/{_segment(alert_id)}")

    def act(
        self, alert_id: str, action: str, *, by: str | None = None, note: str | None = None
    ) -> dict[str, Any]:
        """Acknowledge (`ack`) or resolve (`resolve`) an alert; the API answers 202."""
        body = {k: v for k, v in (("by", by), ("note", note)) if v is not None}
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
