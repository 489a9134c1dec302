"""Property-based fuzz of the door: malformed bodies and headers never yield a 5xx (or a
202), and nothing ever reaches the topic.

Every generated request is invalid by construction (a required attribute missing, an
unknown field, truncated JSON, a wrong token or media type...), so any 2xx is a bug, not
bad luck. The topic is checked once per property, after all its examples ran.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devtools.broker import create_topics
from devtools.stack import DEV_TOKEN
from tests.fixtures.ingest import (
    IngestServer,
    anything_written,
    audit_topic_of,
    child_found,
    incident,
    ingest_settings,
)
from tests.fixtures.tokens import OTHER_SOURCE, SENDER_SOURCE, TokenSet

pytestmark = pytest.mark.integration

FUZZ = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

ATTRIBUTES = ("specversion", "id", "source", "type", "time", "data")
ENVELOPE = {*ATTRIBUTES, "subject", "dataschema", "datacontenttype"}
STRUCTURED = ("application/cloudevents+json", "application/json", "application/json; charset=utf-8")
AUTH = {"Authorization": f"Bearer {DEV_TOKEN}"}

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)
NOT_STRINGS = st.none() | st.booleans() | st.integers() | st.lists(st.integers(), max_size=2)
# What http.client can put in a header (latin-1, no line breaks).
HEADER_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=60,
)


@pytest.fixture(scope="module")
def fuzz_server(kafka_bootstrap: str) -> Iterator[IngestServer]:
    topic = f"ingest.fuzz.{uuid.uuid4().hex[:8]}"
    create_topics(kafka_bootstrap, [topic, audit_topic_of(topic)])
    server = IngestServer(ingest_settings(kafka_bootstrap, topic)).start()
    yield server
    server.stop()


def valid_event(draw: st.DrawFn) -> dict[str, Any]:
    return draw(st.sampled_from([child_found, incident]))()


@st.composite
def malformed_event(draw: st.DrawFn) -> bytes:
    """A JSON document that is certainly not a valid event."""
    event = valid_event(draw)
    defect = draw(
        st.sampled_from(["drop", "unknown", "not_string", "data_unknown", "truncate", "shape"])
    )
    if defect == "drop":
        del event[draw(st.sampled_from(ATTRIBUTES))]
    elif defect == "unknown":
        name = draw(st.text(min_size=1, max_size=12).filter(lambda n: n not in ENVELOPE))
        event[name] = draw(JSON_VALUES)
    elif defect == "not_string":
        event[draw(st.sampled_from(ATTRIBUTES[:5]))] = draw(NOT_STRINGS)
    elif defect == "data_unknown":
        name = draw(st.text(min_size=1, max_size=12).filter(lambda n: n not in event["data"]))
        event["data"][name] = draw(JSON_VALUES)
    elif defect == "shape":
        return json.dumps(draw(st.sampled_from([[event], "event", 1, None]))).encode()
    text = json.dumps(event).encode()
    if defect == "truncate":
        return text[: draw(st.integers(min_value=0, max_value=len(text) - 1))]
    return text


BODIES = malformed_event() | st.binary(max_size=300)


def assert_refused(reply: Any, allowed: set[int]) -> None:
    assert reply.status < 500, reply.body
    assert reply.status in allowed, (reply.status, reply.body)


def test_malformed_bodies_are_refused(fuzz_server: IngestServer, kafka_bootstrap: str) -> None:
    @FUZZ
    @given(body=BODIES, content_type=st.sampled_from(STRUCTURED))
    def check(body: bytes, content_type: str) -> None:
        reply = fuzz_server.post("/v1/events", body, content_type=content_type)
        assert_refused(reply, {400, 422})

    check()
    assert not anything_written(kafka_bootstrap, fuzz_server.topic)


def test_malformed_batches_are_refused(fuzz_server: IngestServer, kafka_bootstrap: str) -> None:
    @FUZZ
    @given(
        good=st.lists(st.builds(child_found), max_size=5),
        bad=BODIES,
        position=st.integers(min_value=0, max_value=5),
    )
    def check(good: list[dict[str, Any]], bad: bytes, position: int) -> None:
        # One bad item among good ones: the whole batch is refused.
        items = [json.dumps(e).encode() for e in good]
        items.insert(min(position, len(items)), bad)
        body = b"[" + b",".join(items) + b"]"
        reply = fuzz_server.post(
            "/v1/events/batch", body, content_type="application/cloudevents-batch+json"
        )
        assert_refused(reply, {400, 422})
        if reply.status == 422 and bad.startswith(b"{"):
            assert {e["index"] for e in reply.json["errors"]} <= {min(position, len(good))}

    check()
    assert not anything_written(kafka_bootstrap, fuzz_server.topic)


@st.composite
def bad_auth(draw: st.DrawFn) -> list[tuple[str, str]]:
    header = draw(
        st.none()
        | HEADER_TEXT
        | HEADER_TEXT.map(lambda t: f"Bearer {t}")
        | st.sampled_from(["Bearer", "Bearer ", f"Basic {DEV_TOKEN}", f"bearer{DEV_TOKEN}"])
    )
    scheme, _, token = (header or "").strip().partition(" ")
    if scheme.lower() == "bearer" and token.strip() == DEV_TOKEN:
        header = None  # the one valid token, drawn by chance
    return [] if header is None else [("Authorization", header)]


def test_bad_tokens_are_401(fuzz_server: IngestServer, kafka_bootstrap: str) -> None:
    @FUZZ
    @given(auth=bad_auth(), path=st.sampled_from(["/v1/events", "/v1/events/batch"]))
    def check(auth: list[tuple[str, str]], path: str) -> None:
        event = child_found()
        body = json.dumps([event] if path.endswith("batch") else event).encode()
        content_type = (
            "application/cloudevents-batch+json" if path.endswith("batch") else STRUCTURED[0]
        )
        reply = fuzz_server.request("POST", path, body, [("Content-Type", content_type), *auth])
        assert_refused(reply, {400, 401})

    check()
    assert not anything_written(kafka_bootstrap, fuzz_server.topic)


ACCEPTED_ESSENCES = {
    "application/json",
    "application/cloudevents+json",
    "application/cloudevents-batch+json",
}


def test_bad_media_types_are_415(fuzz_server: IngestServer, kafka_bootstrap: str) -> None:
    @FUZZ
    @given(
        content_type=st.none()
        | HEADER_TEXT.filter(lambda t: t.split(";")[0].strip().lower() not in ACCEPTED_ESSENCES)
        | st.sampled_from(
            ["application/json; charset=latin-1", "application/json; charset=utf-16"]
        ),
        path=st.sampled_from(["/v1/events", "/v1/events/batch"]),
    )
    def check(content_type: str | None, path: str) -> None:
        event = child_found()
        body = json.dumps([event] if path.endswith("batch") else event).encode()
        headers = list(AUTH.items())
        if content_type is not None:
            headers.append(("Content-Type", content_type))
        reply = fuzz_server.request("POST", path, body, headers)
        assert_refused(reply, {400, 415})

    check()
    assert not anything_written(kafka_bootstrap, fuzz_server.topic)


@st.composite
def bad_binary_headers(draw: st.DrawFn) -> list[tuple[str, str]]:
    """ce-* headers for child.found with one certain defect, and random values elsewhere."""
    headers = {
        "ce-specversion": "1.0",
        "ce-id": draw(HEADER_TEXT),
        "ce-source": draw(HEADER_TEXT | st.just("urn:a")),
        "ce-type": draw(HEADER_TEXT | st.just("child.found")),
        "ce-time": draw(HEADER_TEXT | st.just("2026-01-01T00:00:00Z")),
    }
    defect = draw(st.sampled_from(["drop", "extension", "specversion"]))
    if defect == "drop":
        del headers[draw(st.sampled_from(sorted(set(headers) - {"ce-specversion"})))]
    elif defect == "extension":
        suffix = draw(
            st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)
        )
        if suffix not in {"specversion", "id", "source", "type", "time", "subject", "dataschema"}:
            headers[f"ce-{suffix}"] = draw(HEADER_TEXT)
        else:
            del headers["ce-id"]
    else:
        headers["ce-specversion"] = draw(HEADER_TEXT.filter(lambda v: v.strip() != "1.0"))
    return list(headers.items())


def test_bad_binary_mode_is_refused(fuzz_server: IngestServer, kafka_bootstrap: str) -> None:
    @FUZZ
    @given(
        headers=bad_binary_headers(),
        body=st.just(b'{"episode_id": "E", "child_id": "C", "area": "north"}') | BODIES,
    )
    def check(headers: list[tuple[str, str]], body: bytes) -> None:
        all_headers = [("Content-Type", "application/json"), *AUTH.items(), *headers]
        reply = fuzz_server.request("POST", "/v1/events", body, all_headers)
        assert_refused(reply, {400, 422})

    check()
    assert not anything_written(kafka_bootstrap, fuzz_server.topic)


# --- free text in the places a sender controls, and scoped tokens --------------------------
# These requests may be valid (an id that happens to fit the pattern), so they go to a
# server of their own whose topic is allowed to receive records.

TAG = "ZQ"  # prefixed to drawn text so that an echo in a reply is unmistakable
IDENTIFIER = re.compile(r"^[A-Za-z0-9._:/-]{1,128}$")


@pytest.fixture(scope="module")
def open_server(kafka_bootstrap: str) -> Iterator[IngestServer]:
    topic = f"ingest.fuzz-open.{uuid.uuid4().hex[:8]}"
    create_topics(kafka_bootstrap, [topic, audit_topic_of(topic)])
    # The development token (for free-text events) beside the scoped cast.
    tokens = [*TokenSet.matrix().entries(), *(ingest_settings(kafka_bootstrap, topic).tokens or [])]
    server = IngestServer(ingest_settings(kafka_bootstrap, topic, tokens=tokens)).start()
    yield server
    server.stop()


FREE_TEXT = st.text(max_size=140)


@st.composite
def free_text_event(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """A valid event with drawn text in one free-text place; returns it and the text."""
    event = child_found()
    text = TAG + draw(FREE_TEXT)
    place = draw(st.sampled_from(["id", "subject", "unknown", "data_unknown", "dataschema"]))
    if place in {"id", "subject", "dataschema"}:
        event[place] = text
    elif place == "unknown":
        event[text] = draw(JSON_VALUES)
    else:
        event["data"][text] = draw(JSON_VALUES)
    return event, text


def test_free_text_is_never_echoed_and_never_a_5xx(open_server: IngestServer) -> None:
    @FUZZ
    @given(drawn=free_text_event(), batch=st.booleans())
    def check(drawn: tuple[dict[str, Any], str], batch: bool) -> None:
        event, text = drawn
        path = "/v1/events/batch" if batch else "/v1/events"
        payload: object = [event] if batch else event
        content_type = "application/cloudevents-batch+json" if batch else STRUCTURED[0]
        reply = open_server.post(path, payload, content_type=content_type)
        assert reply.status in {202, 422}, (reply.status, reply.body)
        if reply.status == 202:
            # Only identifiers get in, never free text.
            assert IDENTIFIER.match(event["id"])
            assert IDENTIFIER.match(event.get("subject", "x"))
        else:
            assert json.dumps(text)[1:-1].encode() not in reply.body
            assert text.encode() not in reply.body

    check()


def test_scoped_tokens_get_202_or_403_never_a_5xx(open_server: IngestServer) -> None:
    @FUZZ
    @given(
        caller=st.sampled_from(["sender", "typed-sender", "other-sender", "reader", "no-roles"]),
        kind=st.sampled_from([child_found, incident]),
        source=st.sampled_from([SENDER_SOURCE, OTHER_SOURCE, "urn:safeguard:source:third"]),
        batch=st.integers(min_value=0, max_value=3),
    )
    def check(caller: str, kind: Any, source: str, batch: int) -> None:
        events = [kind() | {"source": source} for _ in range(max(batch, 1))]
        path = "/v1/events/batch" if batch else "/v1/events"
        payload: object = events if batch else events[0]
        content_type = "application/cloudevents-batch+json" if batch else STRUCTURED[0]
        reply = open_server.post(
            path,
            payload,
            content_type=content_type,
            token=None,
            headers=TokenSet.matrix().header(caller),
        )
        token = TokenSet.matrix().tokens[caller].entry()
        allowed = (
            "send" in token.roles
            and source in token.sources
            and (token.types is None or events[0]["type"] in token.types)
        )
        assert reply.status == (202 if allowed else 403), (caller, reply.status, reply.body)
        if not allowed:
            assert reply.json["errors"], reply.body

    check()
