"""Reading a small JSON request body into a model, refusing anything else with a 4xx.

For the HTTP pages: a 5,000-digit integer or deep nesting would otherwise be a 500,
because `json.loads` raises ValueError and RecursionError for them.
pydantic's own JSON parser is used instead: it bounds nesting, refuses numbers out of
range and invalid UTF-8, and raises nothing but ValidationError, which becomes a 400 (not
JSON) or a 422 (not valid), with errors that name positions and never quote the input
(schemas.errors).
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from schemas.errors import format_validation_error

M = TypeVar("M", bound=BaseModel)


class BodyRefused(Exception):
    """The body cannot be used: `status`, `code`, `message` and `errors` for the reply."""

    def __init__(
        self, status: int, code: str, message: str, errors: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors or []

    def body(self) -> dict[str, Any]:
        """Return the JSON error body, in the shape every service answers with."""
        reply: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.errors:
            reply["errors"] = self.errors
        return reply


def parse_body(raw: bytes, model: type[M], *, max_bytes: int, empty_ok: bool = True) -> M:
    """Return `raw` validated as `model`, or raise BodyRefused (413, 400 or 422).

    An empty (or all-whitespace) body is the model with its defaults when `empty_ok`.
    """
    if len(raw) > max_bytes:
        raise BodyRefused(413, "too_large", f"body over {max_bytes} bytes")
    if not raw.strip():
        if empty_ok:
            return model.model_validate({})
        raise BodyRefused(400, "invalid_json", "the body is empty")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = [e.model_dump() for e in format_validation_error(exc)]
        if any(e["type"] == "json_invalid" for e in exc.errors(include_input=False)):
            raise BodyRefused(400, "invalid_json", "the body is not JSON", errors) from None
        raise BodyRefused(422, "invalid_body", "the body is not valid", errors) from None
