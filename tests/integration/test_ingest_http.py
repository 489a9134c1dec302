"""Every status path of `POST /v1/events` and `/v1/events/batch`, against a real server and
the session broker: what is accepted is on the topic, keyed per child; nothing refused is."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest

from devtools.broker import free_port
from services.ingest.openapi import COMMITTED
from tests.fixtures.broker import read_topic
from tests.fixtures.ingest import (
    NORTHANTS,
    NORTHANTS_TOKEN,
    READER_TOKEN,
    IngestServer,
    anything_written,
    child_found,
    incident,
    iso,
)

pytestmark = pytest.mark.integration

EVENTS = "/v1/events"
BATCH = "/v1/events/batch"
BATCH_TYPE = "application/cloudevents-batch+json"


def values(records: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(r.value) for r in records]


@pytest.mark.parametrize(
    "content_type",
    [
        "application/cloudevents+json",
        "application/json",
        "application/json; charset=utf-8",
        'Application/CloudEvents+JSON;charset="UTF-8"',
    ],
)
def test_structured_event_is_on_the_topic_before_202(
    ingest: IngestServer, kafka_bootstrap: str, content_type: str
) -> None:
    event = child_found(child_id="C-202")
    reply = ingest.post(EVENTS, event, content_type=content_type)
    assert reply.status == 202, reply.body
    assert reply.json == {"id": event["id"], "source": NORTHANTS}
    # 202 means acknowledged: the record is readable at once, keyed by the child.
    [record] = read_topic(kafka_bootstrap, ingest.topic, expect=1, timeout=5)
    assert record.key == b"C-202"
    assert anything_written(kafka_bootstrap, ingest.topic)  # the refusal tests' check works
    assert json.loads(record.value) == event


def test_binary_mode_event(ingest: IngestServer, kafka_bootstrap: str) -> None:
    source = "urn:safeguard:source:custody suite/1"  # a space: percent-encoded on the wire
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "bin-1",
        "ce-source": quote(source, safe=":/"),
        "ce-type": "custody.child_released",
        "ce-time": iso(timedelta(minutes=-5)),
    }
    data = {"custody_id": "CU-1", "child_id": "C-BIN", "destination": "home", "area": "north"}
    reply = ingest.post(EVENTS, data, content_type="application/json", headers=headers)
    # The source has a space, which a URI-reference cannot hold: refused, naming the header.
    assert reply.status == 422, reply.body
    assert reply.json["errors"][0]["loc"] == "ce-source"

    headers["ce-source"] = quote("urn:safeguard:source:custody-suite/1", safe="")
    reply = ingest.post(EVENTS, data, content_type="application/json", headers=headers)
    assert reply.status == 202, reply.body
    [record] = read_topic(kafka_bootstrap, ingest.topic, expect=1, timeout=5)
    assert record.key == b"C-BIN"
    written = json.loads(record.value)
    assert written["source"] == "urn:safeguard:source:custody-suite/1"
    assert written["datacontenttype"] == "application/json"
    assert written["data"] == data


def test_batch_of_500_is_written_whole_and_keyed_per_child(
    ingest: IngestServer, kafka_bootstrap: str
) -> None:
    events = [child_found(f"b-{i}", child_id=f"C-{i % 7}") for i in range(500)]
    reply = ingest.post(BATCH, events, content_type=BATCH_TYPE)
    assert reply.status == 202, reply.body
    assert reply.json == {"accepted": 500}
    records = read_topic(kafka_bootstrap, ingest.topic, expect=500, timeout=10)
    assert len(records) == 500
    # One child's events share a partition and keep the order they were sent in.
    partitions: dict[bytes, set[int]] = {}
    for record in records:
        partitions.setdefault(record.key, set()).add(record.partition)
    assert all(len(p) == 1 for p in partitions.values())
    for child in range(7):
        ids = [
            v["id"]
            for r, v in zip(records, values(records), strict=True)
            if r.key == f"C-{child}".encode()
        ]
        assert ids == [f"b-{i}" for i in range(child, 500, 7)]


def test_incident_with_several_children_is_keyed_by_its_first_child(
    ingest: IngestServer, kafka_bootstrap: str
) -> None:
    reply = ingest.post(EVENTS, incident(children=("C-A", "C-B")))
    assert reply.status == 202, reply.body
    [record] = read_topic(kafka_bootstrap, ingest.topic, expect=1, timeout=5)
    assert record.key == b"C-A"


# --- refusals: each status, its body, and nothing on the topic ---------------------------

Case = tuple[int, str, Callable[[IngestServer], Any]]


def _post(path: str, payload: object, **kwargs: Any) -> Callable[[IngestServer], Any]:
    return lambda server: server.post(path, payload, **kwargs)


BIG = 1024 * 1024 + 1
REFUSALS: dict[str, Case] = {
    "bad json": (400, "malformed_json", _post(EVENTS, b'{"specversion": "1.0",')),
    "not utf-8": (400, "malformed_json", _post(EVENTS, '{"id": "é"}'.encode("latin-1"))),
    "bad json batch": (400, "malformed_json", _post(BATCH, b"[{]", content_type=BATCH_TYPE)),
    "bad json binary": (
        400,
        "malformed_json",
        _post(
            EVENTS,
            b"{nope",
            content_type="application/json",
            headers={"ce-specversion": "1.0", "ce-id": "x", "ce-type": "child.found"},
        ),
    ),
    "no token": (401, "unauthenticated", _post(EVENTS, child_found(), token=None)),
    "unknown token": (401, "unauthenticated", _post(EVENTS, child_found(), token="guess")),
    "non-ascii token": (401, "unauthenticated", _post(EVENTS, child_found(), token="t\u00e9")),
    "basic auth": (
        401,
        "unauthenticated",
        _post(EVENTS, child_found(), token=None, headers={"Authorization": "Basic eDp5"}),
    ),
    "other source": (
        403,
        "forbidden",
        _post(EVENTS, child_found(source="urn:safeguard:source:elsewhere"), token=NORTHANTS_TOKEN),
    ),
    "token without send role": (403, "forbidden", _post(EVENTS, child_found(), token=READER_TOKEN)),
    "over 1 MiB": (413, "body_too_large", _post(EVENTS, b" " * BIG)),
    "over 1 MiB batch": (413, "body_too_large", _post(BATCH, b" " * BIG, content_type=BATCH_TYPE)),
    "text/plain": (
        415,
        "unsupported_media_type",
        _post(EVENTS, child_found(), content_type="text/plain"),
    ),
    "latin-1 charset": (
        415,
        "unsupported_media_type",
        _post(EVENTS, child_found(), content_type="application/json; charset=latin-1"),
    ),
    "batch as json": (
        415,
        "unsupported_media_type",
        _post(BATCH, [child_found()], content_type="application/json"),
    ),
    "binary not json": (
        415,
        "unsupported_media_type",
        _post(EVENTS, b"<x/>", content_type="application/xml", headers={"ce-specversion": "1.0"}),
    ),
    "unknown field": (422, "invalid_event", _post(EVENTS, child_found() | {"chlid_id": "C-1"})),
    "future time": (
        422,
        "invalid_event",
        _post(EVENTS, child_found() | {"time": iso(timedelta(hours=1))}),
    ),
    "empty batch": (422, "invalid_event", _post(BATCH, [], content_type=BATCH_TYPE)),
    "batch of 501": (
        422,
        "invalid_event",
        _post(BATCH, [child_found(f"e{i}") for i in range(501)], content_type=BATCH_TYPE),
    ),
    "batch not an array": (
        422,
        "invalid_event",
        _post(BATCH, child_found(), content_type=BATCH_TYPE),
    ),
}


@pytest.mark.parametrize("name", REFUSALS)
def test_refusal(ingest: IngestServer, kafka_bootstrap: str, name: str) -> None:
    status, code, send = REFUSALS[name]
    reply = send(ingest)
    assert reply.status == status, reply.body
    assert reply.headers["Content-Type"].startswith("application/json")
    assert reply.json["error"] == code
    assert reply.json["message"]
    if status == 401:
        assert reply.headers["WWW-Authenticate"] == 'Bearer realm="safeguard"'
    assert not anything_written(kafka_bootstrap, ingest.topic)


def test_422_names_each_field_and_problem(ingest: IngestServer) -> None:
    event = child_found() | {"specversion": "0.3"}
    event["data"] = {"episode_id": "EP-1", "chlid_id": "C-1", "area": "north"}
    reply = ingest.post(EVENTS, event)
    assert reply.status == 422
    assert {(e["loc"], e["msg"]) for e in reply.json["errors"]} == {
        ("specversion", "Input should be '1.0'"),
        ("data.child_id", "Field required"),
        # By position, never by name: a field name is the sender's free text.
        ("data.<unknown field #1>", "unknown field (extra fields not permitted)"),
    }


def test_batch_422_lists_each_invalid_item_by_index_and_writes_nothing(
    ingest: IngestServer, kafka_bootstrap: str
) -> None:
    events = [child_found(f"ok-{i}") for i in range(5)]
    events[1]["data"]["child_id"] = "has spaces"
    events[3]["type"] = "child.lost"
    reply = ingest.post(BATCH, events, content_type=BATCH_TYPE)
    assert reply.status == 422
    errors = reply.json["errors"]
    assert [(e["index"], e["loc"]) for e in errors] == [(1, "[1].data.child_id"), (3, "[3].type")]
    assert "unknown type" in errors[1]["msg"]
    assert not anything_written(kafka_bootstrap, ingest.topic)


def test_batch_403_names_each_forbidden_item_and_writes_nothing(
    ingest: IngestServer, kafka_bootstrap: str
) -> None:
    events = [child_found(f"s-{i}") for i in range(3)]
    events[2]["source"] = "urn:safeguard:source:elsewhere"
    reply = ingest.post(BATCH, events, content_type=BATCH_TYPE, token=NORTHANTS_TOKEN)
    assert reply.status == 403
    assert [(e["index"], e["loc"]) for e in reply.json["errors"]] == [(2, "[2].source")]
    assert not anything_written(kafka_bootstrap, ingest.topic)


def test_binary_mode_header_problems_name_the_header(ingest: IngestServer) -> None:
    headers = [
        ("ce-specversion", "1.0"),
        ("ce-type", "child.found"),
        ("ce-source", NORTHANTS),
        ("ce-time", iso(timedelta(minutes=-1))),
        ("ce-colour", "blue"),
        ("ce-type", "child.found"),
    ]
    body = json.dumps({"episode_id": "EP-1", "child_id": "C-1", "area": "north"}).encode()
    reply = ingest.request(
        "POST",
        EVENTS,
        body,
        [
            ("Content-Type", "application/json"),
            ("Authorization", "Bearer safeguard-dev-token"),
            *headers,
        ],
    )
    assert reply.status == 422
    # The unknown header is named by position: its name is the sender's free text.
    assert {e["loc"] for e in reply.json["errors"]} == {"ce-<unknown attribute #1>", "ce-type"}

    reply = ingest.request(
        "POST",
        EVENTS,
        body,
        [
            ("Content-Type", "application/json"),
            ("Authorization", "Bearer safeguard-dev-token"),
            *headers[:4],
        ],
    )
    assert reply.status == 422
    assert [(e["loc"], e["msg"]) for e in reply.json["errors"]] == [("ce-id", "Field required")]


def test_chunked_bodies_are_read_whole_and_limited(ingest: IngestServer) -> None:
    headers = {"Content-Type": "application/json", "Authorization": "Bearer safeguard-dev-token"}
    body = json.dumps(child_found()).encode()
    # A valid event split into many small chunks: read to the end, not just the first one.
    pieces = [body[i : i + 7] for i in range(0, len(body), 7)]
    assert ingest.request("POST", EVENTS, headers=headers, chunks=pieces).status == 202
    # No Content-Length to check up front: the limit is enforced while reading.
    reply = ingest.request("POST", EVENTS, headers=headers, chunks=[b" " * 65536] * 17)
    assert reply.status == 413
    assert reply.json["error"] == "body_too_large"


def test_unknown_route_and_method_answer_json(ingest: IngestServer) -> None:
    reply = ingest.get("/v1/nothing")
    assert (reply.status, reply.json["error"]) == (404, "not_found")
    reply = ingest.get(EVENTS)
    assert reply.status == 405
    assert reply.headers["Allow"] == "POST"


# --- probes, metrics, OpenAPI ------------------------------------------------------------


def test_probes(ingest: IngestServer, start_ingest: Callable[..., IngestServer]) -> None:
    assert (ingest.get("/healthz").status, ingest.get("/readyz").json) == (200, {"status": "ready"})
    # A topic that does not exist: the broker answers, but ingest could not write.
    missing = start_ingest(topic="ingest.never-created", create=False)
    reply = missing.get("/readyz")
    assert reply.status == 503
    assert reply.headers["Retry-After"] == "3"


def test_unreachable_broker_gives_503_within_the_timeout(
    start_ingest: Callable[..., IngestServer],
) -> None:
    server = start_ingest(
        bootstrap=f"127.0.0.1:{free_port()}",
        create=False,
        produce_timeout_seconds=1.5,
        readiness_timeout_seconds=1.0,
    )
    started = time.monotonic()
    reply = server.post(EVENTS, child_found())
    assert time.monotonic() - started < 4
    assert reply.status == 503
    assert reply.json["error"] == "broker_unavailable"
    assert reply.headers["Retry-After"] == "3"
    started = time.monotonic()
    assert server.get("/readyz").status == 503
    assert time.monotonic() - started < 3


def test_metrics_count_routes_types_reasons_and_latency(ingest: IngestServer) -> None:
    assert ingest.post(EVENTS, child_found(child_id="C-SECRET-1")).status == 202
    assert ingest.post(EVENTS, child_found(), token=None).status == 401
    assert ingest.post(EVENTS, b"{", content_type="application/json").status == 400
    text = ingest.get("/metrics").body.decode()
    for line in (
        'safeguard_ingest_requests_total{route="/v1/events",status="202"} 1.0',
        'safeguard_ingest_requests_total{route="/v1/events",status="401"} 1.0',
        'safeguard_ingest_events_accepted_total{type="child.found"} 1.0',
        'safeguard_ingest_requests_rejected_total{reason="unauthenticated"} 1.0',
        'safeguard_ingest_requests_rejected_total{reason="malformed_json"} 1.0',
        "safeguard_ingest_produce_latency_seconds_count 1.0",
        "safeguard_ingest_requests_in_flight 1.0",  # the /metrics request itself
    ):
        assert line in text, line
    assert "C-SECRET-1" not in text


def test_served_openapi_is_the_committed_file(ingest: IngestServer) -> None:
    reply = ingest.get("/openapi.json")
    assert reply.status == 200
    assert reply.json == json.loads(COMMITTED.read_text(encoding="utf-8")), (
        "run `python -m services.ingest.openapi` and commit services/ingest/openapi.json"
    )
