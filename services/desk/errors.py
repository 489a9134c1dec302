"""The desk's refusals: raised where the problem is found, turned into HTTP in one place.

`services.desk.http.errors_middleware` answers each with its status and a JSON body
(`{"error", "message", "errors"?}`) on the API, or with the console's problem page under
`/console`. Messages name what was wrong and what was expected, never a value that was
sent (it could carry personal data).
"""

from __future__ import annotations

from typing import Any, ClassVar


class DeskError(Exception):
    """A request the desk will not serve as asked."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "error"
    title: ClassVar[str] = "Refused"

    def __init__(
        self,
        message: str,
        *,
        errors: list[dict[str, str]] | None = None,
        **extra: Any,  # noqa: ANN401
    ) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or []
        self.extra = extra

    def body(self) -> dict[str, Any]:
        """Return the JSON error body."""
        body: dict[str, Any] = {"error": self.code, "message": self.message, **self.extra}
        if self.errors:
            body["errors"] = self.errors
        return body

    @property
    def headers(self) -> dict[str, str]:
        """Return the headers the answer carries."""
        return {}


class Unauthenticated(DeskError):
    """No valid bearer token (or session)."""

    status = 401
    code = "unauthenticated"
    title = "Signed out"

    @property
    def headers(self) -> dict[str, str]:
        """Say which scheme to use."""
        return {"WWW-Authenticate": 'Bearer realm="safeguard"'}


class Forbidden(DeskError):
    """The caller may not do this: a role it lacks, an area outside its scope, a bad form."""

    status = 403
    code = "forbidden"
    title = "Not allowed"


class NotFound(DeskError):
    """Nothing by that id in the projection."""

    status = 404
    code = "not_found"
    title = "Not found"


class Conflict(DeskError):
    """The alert is no longer in a state that allows the action; `current` says which."""

    status = 409
    code = "conflict"
    title = "Already changed"


class InvalidQuery(DeskError):
    """A filter, limit, cursor or report parameter that is not valid."""

    status = 422
    code = "invalid_query"
    title = "Not a valid query"


class InvalidBody(DeskError):
    """A request body that is not valid (400 not JSON, 413 too large, 422 invalid)."""

    code = "invalid_body"
    title = "Not accepted"

    def __init__(self, status: int, code: str, message: str, errors: list[dict[str, str]]) -> None:
        super().__init__(message, errors=errors)
        self.status = status  # type: ignore[misc]
        self.code = code  # type: ignore[misc]


class Unavailable(DeskError):
    """A dependency did not answer (the database, the broker): retry later."""

    status = 503
    code = "unavailable"
    title = "Try again"

    @property
    def headers(self) -> dict[str, str]:
        """Say when to retry."""
        return {"Retry-After": "5"}


class DatabaseUnavailable(Unavailable):
    """PostgreSQL did not answer, or its schema is older than this code."""

    code = "database_unavailable"


class BrokerUnavailable(Unavailable):
    """The broker did not take a record (an audit record or a command) in time."""

    code = "broker_unavailable"


class IdentityUnavailable(Unavailable):
    """The identity provider did not answer in time, or answered with something unusable."""

    code = "identity_provider_unavailable"


class SignInFailed(DeskError):
    """A sign-in that did not prove who someone is: nobody is signed in."""

    status = 401
    code = "sign_in_failed"
    title = "Not signed in"


class TooManyAttempts(DeskError):
    """Too many sign-ins from one client address or for one account: wait, then retry."""

    status = 429
    code = "too_many_attempts"
    title = "Too many attempts"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)

    @property
    def headers(self) -> dict[str, str]:
        """Say when to retry."""
        return {"Retry-After": str(self.retry_after)}


class RequestTimeout(DeskError):
    """The request's body did not arrive in time."""

    status = 408
    code = "request_timeout"
    title = "Too slow"
