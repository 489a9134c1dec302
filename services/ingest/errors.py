"""What can go wrong at the door, each mapped to one HTTP status in one place (http.py)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from schemas.errors import FieldError
from services.ingest.models import ErrorDetail


class IngestError(Exception):
    """Base of every error the ingest service answers with."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(
        self, message: str, errors: Iterable[ErrorDetail | FieldError] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.errors = [
            e if isinstance(e, ErrorDetail) else ErrorDetail(loc=e.loc, msg=e.msg)
            for e in errors or ()
        ]


class Unauthenticated(IngestError):
    """No token, or a token nobody configured."""

    status = 401
    code = "unauthenticated"


class Forbidden(IngestError):
    """A known token acting outside what it may do."""

    status = 403
    code = "forbidden"


class MalformedBody(IngestError):
    """The body is not JSON."""

    status = 400
    code = "malformed_json"


class BodyTooLarge(IngestError):
    """The body is over the configured limit."""

    status = 413
    code = "body_too_large"


class RequestTimeout(IngestError):
    """The body did not arrive within the time allowed."""

    status = 408
    code = "request_timeout"


class UnsupportedMediaType(IngestError):
    """A content type the endpoint does not take."""

    status = 415
    code = "unsupported_media_type"


class InvalidEvents(IngestError):
    """The body is JSON but not valid against the contract."""

    status = 422
    code = "invalid_event"


class BrokerUnavailable(IngestError):
    """The broker did not acknowledge the write in time; the caller should retry."""

    status = 503
    code = "broker_unavailable"
