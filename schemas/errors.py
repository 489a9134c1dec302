"""Validation failures in a form fit to show a sender, log, or dead-letter.

pydantic reports errors as loc tuples with the offending input attached. Inputs may be
personal data, so only a location path (`data.children[0].child_id`) and a message
naming the problem ever leave this module, and both are safe by construction:

- a field the contract does not define is named by position, never by its name (a
  sender can put anything in a name): `data.<unknown field #2>` is the second unknown
  field of `data`, in the order written;
- a message is pydantic's wording only where that wording cannot hold the input; where
  it can (tags, validator messages) or where it happens to contain the input anyway, a
  fixed sentence per error type replaces it.
"""

import re
from collections.abc import Iterable, Sequence

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from schemas.envelope import KNOWN_TYPES, ContractModel

__all__ = [
    "ROOT_LOC",
    "FieldError",
    "InvalidEvent",
    "MalformedJSON",
    "format_loc",
    "format_validation_error",
    "invalid_event_from",
]

#: Location reported for errors about the document as a whole.
ROOT_LOC = "(root)"

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_QUOTED = re.compile(r"'([^']*)'")

# Messages replaced because pydantic's wording is unclear to a sender, differs
# between JSON and Python input, or (for union tags) repeats the input.
_MESSAGES = {
    "extra_forbidden": "unknown field (extra fields not permitted)",
    "union_tag_not_found": "Field required",
    "model_attributes_type": "Input should be an object",
    "model_type": "Input should be an object",
    "dict_type": "Input should be an object",
}
# Error types whose pydantic message is built from text that may come from the input
# (a validator's own message, an attribute name): never shown as pydantic words it.
_INPUT_WORDED = {"value_error", "assertion_error", "get_attribute_error"}
# pydantic quotes what it repeats ('...'); a message quoting the input is replaced.
_GENERIC = "Input is not valid here"


class FieldError(ContractModel):
    """One problem with an input: where it is and what is wrong (never the value)."""

    loc: str
    msg: str

    def __str__(self) -> str:
        """Render as `loc: msg`."""
        return f"{self.loc}: {self.msg}"


class InvalidEvent(Exception):
    """An input that is not a valid event; `errors` lists every problem found."""

    def __init__(self, errors: Iterable[FieldError]) -> None:
        """Keep the errors and summarise them as the exception message."""
        self.errors: list[FieldError] = list(errors)
        super().__init__("; ".join(map(str, self.errors)) or "invalid event")


class MalformedJSON(InvalidEvent):
    """The input is not JSON at all (HTTP 400, where an invalid event is 422)."""


def format_loc(loc: Sequence[int | str]) -> str:
    """Render a pydantic loc tuple as a path: `data.children[0].child_id`."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif _IDENTIFIER.fullmatch(part):
            path += f".{part}" if path else part
        else:
            # A key that is not a plain name (e.g. an unknown field "a.b").
            path += f'["{part}"]'
    return path or ROOT_LOC


def _message(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind in _MESSAGES:
        return _MESSAGES[kind]
    if kind in _INPUT_WORDED:
        return _GENERIC
    message = error["msg"]
    value = error.get("input")
    if isinstance(value, str) and (f"'{value}'" in message or f'"{value}"' in message):
        return _GENERIC
    return message


def _format_one(error: ErrorDetails, unknown: dict[tuple[int | str, ...], int]) -> FieldError:
    kind = error["type"]
    loc = tuple(error["loc"])
    # A tagged union puts the tag in front of the member's own path; drop it so the
    # path is the same as in the document the sender wrote.
    if len(loc) > 1 and loc[0] in KNOWN_TYPES:
        loc = loc[1:]
    if kind == "union_tag_invalid":
        expected = _QUOTED.findall(str(error.get("ctx", {}).get("expected_tags", "")))
        return FieldError(
            loc="type",
            msg=f"unknown type; expected one of: {', '.join(sorted(expected))}",
        )
    if kind == "union_tag_not_found":
        loc = ("type",)
    if kind == "extra_forbidden" and loc:
        # The last part is the sender's own field name: count it, never repeat it.
        parent = loc[:-1]
        unknown[parent] = unknown.get(parent, 0) + 1
        path = format_loc(parent) if parent else ""
        name = f"<unknown field #{unknown[parent]}>"
        return FieldError(loc=f"{path}.{name}" if path else name, msg=_message(error))
    return FieldError(loc=format_loc(loc), msg=_message(error))


def format_validation_error(exc: ValidationError) -> list[FieldError]:
    """Turn a pydantic `ValidationError` into `FieldError`s, without input values.

    The inputs are read only to make sure no message quotes them; they are not kept.
    """
    unknown: dict[tuple[int | str, ...], int] = {}
    return [
        _format_one(error, unknown)
        for error in exc.errors(include_url=False, include_input=True, include_context=True)
    ]


def invalid_event_from(exc: ValidationError) -> InvalidEvent:
    """Convert a pydantic error: `MalformedJSON` if the input was not JSON at all."""
    errors = format_validation_error(exc)
    if any(error["type"] == "json_invalid" for error in exc.errors(include_input=False)):
        return MalformedJSON(errors)
    return InvalidEvent(errors)
