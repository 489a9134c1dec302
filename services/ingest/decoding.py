"""From HTTP request parts to contract events: media types, binary-mode headers, batches.

Pure functions, no I/O: each either returns validated events or raises the IngestError
that names the problem. JSON is parsed by pydantic's parser, which is strict (UTF-8
only, no lone surrogates, bounded nesting) so no input can make it raise anything but a
validation error.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import unquote

from pydantic import TypeAdapter, ValidationError
from pydantic_core import from_json

from schemas.errors import ROOT_LOC, FieldError, InvalidEvent, MalformedJSON
from schemas.events import Event, parse_event, parse_event_json
from services.ingest.errors import InvalidEvents, MalformedBody, UnsupportedMediaType
from services.ingest.models import ErrorDetail

JSON = "application/json"
CLOUDEVENTS_JSON = "application/cloudevents+json"
CLOUDEVENTS_BATCH = "application/cloudevents-batch+json"
STRUCTURED_TYPES = frozenset({CLOUDEVENTS_JSON, JSON})
MAX_BATCH = 500

# CloudEvents HTTP binding, binary mode: context attributes travel as `ce-*` headers and
# the body is `data`. `datacontenttype` is the Content-Type itself, so no header for it.
BINARY_ATTRIBUTES = frozenset(
    {"specversion", "id", "source", "type", "time", "subject", "dataschema"}
)
BINARY_PREFIX = "ce-"
# Context attributes the CloudEvents spec defines that binary mode does not take here.
_SPEC_ATTRIBUTES = frozenset({"datacontenttype"})

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# The binding allows printable ASCII in header values; anything else is percent-encoded.
_PRINTABLE_ASCII = re.compile(r"^[\x20-\x7e]*$")

_BATCH_ADAPTER: TypeAdapter[list[Event]] = TypeAdapter(list[Event])


@dataclass(frozen=True)
class MediaType:
    """A parsed Content-Type: the lower-cased `type/subtype` and its parameters."""

    essence: str
    params: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, header: str | None) -> MediaType | None:
        """Parse a Content-Type header; None when absent or not a media type at all."""
        if header is None:
            return None
        essence, *rest = header.split(";")
        essence = essence.strip().lower()
        kind, slash, subtype = essence.partition("/")
        if not (slash and _TOKEN.match(kind) and _TOKEN.match(subtype)):
            return None
        params: dict[str, str] = {}
        for part in rest:
            name, equals, value = part.strip().partition("=")
            if not part.strip():
                continue
            if not equals or not _TOKEN.match(name.strip()):
                return None
            params[name.strip().lower()] = value.strip().strip('"')
        return cls(essence, params)

    @property
    def charset(self) -> str | None:
        """Return the lower-cased charset parameter, if any."""
        value = self.params.get("charset")
        return value.lower() if value is not None else None


def require_media_type(header: str | None, accepted: Iterable[str]) -> MediaType:
    """Return the parsed Content-Type if it is one of `accepted` in UTF-8, else raise 415."""
    wanted = sorted(accepted)
    media = MediaType.parse(header)
    if media is None or media.essence not in wanted:
        # The header is the sender's text: said whether it was there, never repeated.
        shown = "none was given" if header is None else "the one given is not accepted"
        raise UnsupportedMediaType(f"Content-Type must be one of {wanted}; {shown}")
    if media.charset not in (None, "utf-8", "utf8"):
        # JSON exchanged between systems is UTF-8 (RFC 8259 section 8.1).
        raise UnsupportedMediaType("JSON must be UTF-8; the charset given is not")
    return media


def is_binary_mode(content_type: str | None, headers: Iterable[str]) -> bool:
    """Tell whether a single-event request uses binary mode.

    A `ce-specversion` header means binary mode, except that a structured-mode media
    type wins, as the CloudEvents HTTP binding says (3.1.1).
    """
    media = MediaType.parse(content_type)
    if media is not None and media.essence == CLOUDEVENTS_JSON:
        return False
    return any(name.lower() == f"{BINARY_PREFIX}specversion" for name in headers)


def binary_attributes(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Collect the context attributes from `ce-*` headers, percent-decoded.

    Raises InvalidEvents naming each offending header: an attribute the contract does not
    define (extensions are not accepted), a repeated header, or a value that is not
    printable ASCII or not valid percent-encoded UTF-8.
    """
    attributes: dict[str, str] = {}
    errors: list[ErrorDetail] = []
    unknown = 0
    for raw_name, raw_value in headers:
        name = raw_name.lower()
        if not name.startswith(BINARY_PREFIX):
            continue
        attribute = name.removeprefix(BINARY_PREFIX)
        if attribute not in BINARY_ATTRIBUTES:
            # A name outside the CloudEvents vocabulary is the sender's own text: it is
            # named by its position among the unknown ce-* headers instead.
            if attribute not in _SPEC_ATTRIBUTES:
                unknown += 1
            errors.append(
                ErrorDetail(
                    loc=name
                    if attribute in _SPEC_ATTRIBUTES
                    else f"{BINARY_PREFIX}<unknown attribute #{unknown}>",
                    msg="unknown attribute (extension attributes are not accepted; "
                    "in binary mode datacontenttype is the Content-Type)",
                )
            )
            continue
        if attribute in attributes:
            errors.append(ErrorDetail(loc=name, msg="header given more than once"))
            continue
        if not _PRINTABLE_ASCII.match(raw_value):
            errors.append(
                ErrorDetail(loc=name, msg="must be printable ASCII; percent-encode the rest")
            )
            continue
        try:
            attributes[attribute] = unquote(raw_value, errors="strict")
        except UnicodeDecodeError:
            errors.append(ErrorDetail(loc=name, msg="not valid percent-encoded UTF-8"))
    if errors:
        raise InvalidEvents("binary-mode headers do not match the contract", errors)
    return attributes


def _malformed(exc: InvalidEvent) -> MalformedBody:
    return MalformedBody("body is not valid JSON", exc.errors)


def parse_structured(body: bytes, *, now: datetime) -> Event:
    """Validate a structured-mode body (the whole event as JSON)."""
    try:
        return parse_event_json(body, now=now)
    except MalformedJSON as exc:
        raise _malformed(exc) from None
    except InvalidEvent as exc:
        raise InvalidEvents("event does not match the contract", exc.errors) from None


def _header_loc(error: FieldError) -> ErrorDetail:
    # Attributes came from headers: name the header the sender has to fix.
    if error.loc in BINARY_ATTRIBUTES:
        return ErrorDetail(loc=f"{BINARY_PREFIX}{error.loc}", msg=error.msg)
    return ErrorDetail(loc=error.loc, msg=error.msg)


def parse_binary(attributes: dict[str, str], body: bytes, *, now: datetime) -> Event:
    """Validate a binary-mode event: attributes from headers, `data` from the body."""
    try:
        data = from_json(body)
    except ValueError as exc:
        raise MalformedBody(
            "body is not valid JSON", [ErrorDetail(loc="data", msg=f"Invalid JSON: {exc}")]
        ) from None
    raw: dict[str, Any] = {**attributes, "datacontenttype": JSON, "data": data}
    try:
        return parse_event(raw, now=now)
    except InvalidEvent as exc:
        raise InvalidEvents(
            "event does not match the contract", [_header_loc(e) for e in exc.errors]
        ) from None


def _item_loc(index: int, loc: str) -> str:
    if loc == ROOT_LOC:
        return f"[{index}]"
    return f"[{index}]{loc}" if loc.startswith("[") else f"[{index}].{loc}"


def _batch_shape_error() -> InvalidEvents:
    return InvalidEvents(
        f"a batch is a JSON array of 1 to {MAX_BATCH} events",
        [ErrorDetail(loc=ROOT_LOC, msg=f"expected an array of 1 to {MAX_BATCH} events")],
    )


def parse_batch(body: bytes, *, now: datetime) -> list[Event]:
    """Validate a batch: every event valid, or InvalidEvents naming each bad item's index."""
    try:
        events = _BATCH_ADAPTER.validate_json(body, context={"now": now})
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors(include_input=False)):
            raise MalformedBody(
                "body is not valid JSON",
                [ErrorDetail(loc=ROOT_LOC, msg=e["msg"]) for e in exc.errors(include_input=False)],
            ) from None
    else:
        if not 1 <= len(events) <= MAX_BATCH:
            raise _batch_shape_error()
        return events
    # The slow path runs only for refused batches: validating item by item gives each
    # error the same wording as for a single event, plus the item's index.
    raw = from_json(body)
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_BATCH:
        raise _batch_shape_error()
    errors: list[ErrorDetail] = []
    for index, item in enumerate(raw):
        try:
            parse_event(item, now=now)
        except InvalidEvent as exc:
            errors.extend(
                ErrorDetail(loc=_item_loc(index, e.loc), msg=e.msg, index=index) for e in exc.errors
            )
    raise InvalidEvents("some events do not match the contract; none was written", errors)
