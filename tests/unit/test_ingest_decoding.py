"""Pure request decoding: media types, binary-mode headers, batches and their error paths."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from services.ingest.decoding import (
    MAX_BATCH,
    MediaType,
    binary_attributes,
    is_binary_mode,
    parse_batch,
    parse_binary,
    parse_structured,
    require_media_type,
)
from services.ingest.errors import InvalidEvents, MalformedBody, UnsupportedMediaType

NOW = datetime(2026, 11, 20, 22, 0, tzinfo=UTC)


def found(event_id: str = "e-1", child_id: str = "C-1") -> dict[str, object]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": "urn:a",
        "type": "child.found",
        "time": "2026-11-20T21:14:00Z",
        "data": {"episode_id": "EP-1", "child_id": child_id, "area": "north"},
    }


@pytest.mark.parametrize(
    ("header", "essence", "charset"),
    [
        ("application/json", "application/json", None),
        ('Application/JSON ; Charset="UTF-8"', "application/json", "utf-8"),
        ("application/cloudevents+json;charset=utf-8;x=y", "application/cloudevents+json", "utf-8"),
    ],
)
def test_media_type_parse(header: str, essence: str, charset: str | None) -> None:
    media = MediaType.parse(header)
    assert media is not None
    assert (media.essence, media.charset) == (essence, charset)


@pytest.mark.parametrize(
    "header", [None, "", "json", "application/", "a b/c", "application/json; x"]
)
def test_media_type_parse_refuses_what_is_not_a_media_type(header: str | None) -> None:
    assert MediaType.parse(header) is None


@pytest.mark.parametrize(
    "header", ["text/plain", None, "application/json; charset=latin-1", "application/jsonx"]
)
def test_require_media_type_415(header: str | None) -> None:
    with pytest.raises(UnsupportedMediaType):
        require_media_type(header, {"application/json"})


def test_require_media_type_accepts_utf8_spellings() -> None:
    for header in ("application/json", "application/json;charset=UTF8"):
        assert require_media_type(header, {"application/json"}).essence == "application/json"


def test_binary_mode_is_ce_specversion_unless_structured_media_type() -> None:
    assert is_binary_mode("application/json", ["Content-Type", "CE-SpecVersion"])
    assert not is_binary_mode("application/json", ["Content-Type"])
    assert not is_binary_mode("application/cloudevents+json", ["ce-specversion"])


def test_binary_attributes_percent_decoded() -> None:
    attributes = binary_attributes(
        [("ce-specversion", "1.0"), ("CE-Source", "urn%3Aa%2Fb"), ("Authorization", "x")]
    )
    assert attributes == {"specversion": "1.0", "source": "urn:a/b"}


@pytest.mark.parametrize(
    ("headers", "loc"),
    [
        ([("ce-colour", "blue")], "ce-<unknown attribute #1>"),
        ([("ce-datacontenttype", "application/json")], "ce-datacontenttype"),
        ([("ce-id", "a"), ("ce-id", "b")], "ce-id"),
        ([("ce-id", "caf\u00e9")], "ce-id"),
        ([("ce-id", "%ff")], "ce-id"),
    ],
)
def test_binary_attribute_problems_name_the_header(
    headers: list[tuple[str, str]], loc: str
) -> None:
    with pytest.raises(InvalidEvents) as caught:
        binary_attributes(headers)
    assert [e.loc for e in caught.value.errors] == [loc]


def test_parse_binary_maps_attribute_errors_to_headers() -> None:
    attributes = {"specversion": "1.0", "source": "urn:a", "type": "child.found", "time": "x"}
    with pytest.raises(InvalidEvents) as caught:
        parse_binary(attributes, b'{"episode_id": "E", "child_id": "C", "area": "north"}', now=NOW)
    assert {e.loc for e in caught.value.errors} == {"ce-id", "ce-time"}
    with pytest.raises(MalformedBody):
        parse_binary(attributes, b"{", now=NOW)
    attributes |= {"id": "b-1", "time": "2026-11-20T21:14:00Z"}
    event = parse_binary(
        attributes, b'{"episode_id": "E", "child_id": "C", "area": "north"}', now=NOW
    )
    assert (event.id, event.datacontenttype) == ("b-1", "application/json")


def test_parse_structured() -> None:
    assert parse_structured(json.dumps(found()).encode(), now=NOW).id == "e-1"
    with pytest.raises(MalformedBody) as malformed:
        parse_structured(b"[" * 1000, now=NOW)
    assert malformed.value.errors[0].loc == "(root)"
    with pytest.raises(InvalidEvents):
        parse_structured(json.dumps(found() | {"extra": 1}).encode(), now=NOW)


def test_parse_batch_valid() -> None:
    events = parse_batch(json.dumps([found("a"), found("b")]).encode(), now=NOW)
    assert [e.id for e in events] == ["a", "b"]


def test_parse_batch_reports_each_bad_item_with_its_index() -> None:
    bad = found("b")
    bad["data"] = {"episode_id": "EP-1", "area": "north"}
    body = json.dumps([found("a"), bad, 7, found("c") | {"a.b": 1}]).encode()
    with pytest.raises(InvalidEvents) as caught:
        parse_batch(body, now=NOW)
    assert [(e.index, e.loc) for e in caught.value.errors] == [
        (1, "[1].data.child_id"),
        (2, "[2]"),
        (3, "[3].<unknown field #1>"),  # by position: the name is the sender's text
    ]


@pytest.mark.parametrize(
    "payload", [[], {"a": 1}, "x", [found(str(i)) for i in range(MAX_BATCH + 1)]]
)
def test_parse_batch_shape(payload: object) -> None:
    with pytest.raises(InvalidEvents) as caught:
        parse_batch(json.dumps(payload).encode(), now=NOW)
    assert [e.loc for e in caught.value.errors] == ["(root)"]


def test_parse_batch_malformed() -> None:
    with pytest.raises(MalformedBody):
        parse_batch(b"[{]", now=NOW)
