"""Ingest at the boundary: audit before the event, refusals on the record, slow clients cut.

A real ingest server on the session broker (tests/fixtures/ingest.py). The audit record
of who sent an event is written before the event: when it cannot be, the caller gets a
503 and no event reaches the topic, so nothing is processed without its record.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import pytest

from devtools.stack import DEV_TOKEN
from tests.fixtures.broker import read_all
from tests.fixtures.ingest import (
    NORTHANTS_TOKEN,
    READER_TOKEN,
    IngestServer,
    anything_written,
    child_found,
)

pytestmark = pytest.mark.integration


def audit_records(server: IngestServer) -> list[dict[str, Any]]:
    bootstrap = server.settings.kafka.bootstrap_servers
    topic = server.settings.audit_topic
    return [json.loads(r.value)["data"] for r in read_all(bootstrap, topic)]


def test_an_event_whose_audit_record_cannot_be_written_is_refused_and_never_written(
    start_ingest,
) -> None:
    # A topic name the broker refuses: the audit write fails for real.
    server = start_ingest(audit_topic="no such topic!")
    reply = server.post("/v1/events", child_found(), token=DEV_TOKEN)
    assert reply.status == 503, reply.body
    assert reply.headers["Retry-After"]
    assert not anything_written(server.settings.kafka.bootstrap_servers, server.topic)


def test_refusals_are_audited_with_the_token_or_the_callers_address(ingest) -> None:
    assert ingest.post("/v1/events", child_found(), token="not-a-token").status == 401
    assert ingest.post("/v1/events", child_found(), token=READER_TOKEN).status == 403
    accepted = ingest.post("/v1/events", child_found(), token=NORTHANTS_TOKEN)
    assert accepted.status == 202
    records = audit_records(ingest)
    refused = [r for r in records if r["action"] == "request.refused"]
    # Written in the background: wait until both are there (keys differ: any order).
    deadline = time.monotonic() + 10
    while len(refused) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
        refused = [r for r in audit_records(ingest) if r["action"] == "request.refused"]
    assert sorted((r["actor"], r["refusal"]["status"], r["refusal"]["route"]) for r in refused) == [
        ("client-127.0.0.1", 401, "/v1/events"),
        ("reader", 403, "/v1/events"),
    ]
    assert [r["actor"] for r in records if r["action"] == "event.accepted"] == ["northants"]


def test_a_body_sent_a_trickle_at_a_time_is_answered_408(start_ingest) -> None:
    server = start_ingest(body_timeout_seconds=1.0)
    body = json.dumps(child_found()).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/events HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer " + NORTHANTS_TOKEN.encode() + b"\r\n"
            b"Content-Type: application/cloudevents+json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        started = time.monotonic()
        sock.sendall(body[:10])  # then nothing more
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 408"), reply[:80]
    assert time.monotonic() - started < 5
    assert not anything_written(server.settings.kafka.bootstrap_servers, server.topic)


def test_headers_sent_a_trickle_at_a_time_lose_the_connection(start_ingest) -> None:
    server = start_ingest(header_timeout_seconds=2.0)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /v1/events HTTP/1.1\r\n")
        closed_after = None
        for _ in range(20):
            try:
                sock.sendall(b"X")  # one byte of a header a second, never finished
                if sock.recv(1, socket.MSG_DONTWAIT) == b"":
                    closed_after = time.monotonic() - started
                    break
            except BlockingIOError:
                pass
            except OSError:
                closed_after = time.monotonic() - started
                break
            time.sleep(0.5)
    assert closed_after is not None, "the server kept the connection open"
    assert closed_after < 6
