"""Who may send what: the authorisation matrix of ingest's endpoints, and the audit trail.

Every sending endpoint x every kind of caller (no token, a wrong token, a token without
the role, a token of another source, a token limited to other event types, the right
token), against a real server and the session broker. A refusal is 401 or 403 with a
body naming what was not allowed, and writes nothing; an acceptance is 202 and writes
one audit record per event naming the token. The probe pages, `/metrics` and
`/openapi.json` are public by design and not in the matrix.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.fixtures.broker import read_all, read_topic
from tests.fixtures.ingest import IngestServer, anything_written, child_found, incident
from tests.fixtures.tokens import SENDER_SOURCE, TokenSet

pytestmark = pytest.mark.integration

TOKENS = TokenSet.matrix()
EVENTS = "/v1/events"
BATCH = "/v1/events/batch"
BATCH_TYPE = "application/cloudevents-batch+json"


def found() -> dict[str, Any]:
    return child_found(source=SENDER_SOURCE)


def reported() -> dict[str, Any]:
    return incident() | {"source": SENDER_SOURCE}


@pytest.fixture
def server(start_ingest: Callable[..., IngestServer]) -> IngestServer:
    return start_ingest(tokens=TOKENS.entries())


def send(server: IngestServer, path: str, events: list[dict[str, Any]], caller: str | None) -> Any:
    payload: object = events if path == BATCH else events[0]
    content_type = BATCH_TYPE if path == BATCH else "application/cloudevents+json"
    return server.post(
        path, payload, content_type=content_type, token=None, headers=TOKENS.header(caller)
    )


def loc(path: str, field: str, index: int = 0) -> str:
    return f"[{index}].{field}" if path == BATCH else field


# (caller, events) -> (status, error code, [(loc field, message fragment)]) per endpoint
REFUSED: dict[
    str, tuple[str | None, Callable[[], list[dict[str, Any]]], int, str, list[tuple[str, str]]]
] = {
    "no token": (None, lambda: [found()], 401, "unauthenticated", []),
    "wrong token": ("unknown", lambda: [found()], 401, "unauthenticated", []),
    "token without any role": (
        "no-roles",
        lambda: [found()],
        403,
        "forbidden",
        [("(root)", "send")],
    ),
    "token without the send role": (
        "duty-all",
        lambda: [found()],
        403,
        "forbidden",
        [("(root)", "send")],
    ),
    "token of another source": (
        "other-sender",
        lambda: [found()],
        403,
        "forbidden",
        [("source", "source")],
    ),
    "token limited to other types": (
        "typed-sender",
        lambda: [reported()],
        403,
        "forbidden",
        [("type", "incident.reported")],
    ),
}


@pytest.mark.parametrize("path", [EVENTS, BATCH])
@pytest.mark.parametrize("case", REFUSED)
def test_refused_callers_are_told_what_was_not_allowed(
    server: IngestServer, kafka_bootstrap: str, path: str, case: str
) -> None:
    caller, events, status, code, problems = REFUSED[case]
    reply = send(server, path, events(), caller)
    assert reply.status == status, reply.body
    assert reply.json["error"] == code
    assert reply.json["message"]
    got = [(e["loc"], e["msg"]) for e in reply.json["errors"]]
    expected_locs = [field if field == "(root)" else loc(path, field) for field, _ in problems]
    assert [g[0] for g in got] == expected_locs
    for (_, message), (_, fragment) in zip(got, problems, strict=True):
        assert fragment in message
    if status == 401:
        assert reply.headers["WWW-Authenticate"] == 'Bearer realm="safeguard"'
    assert not anything_written(kafka_bootstrap, server.topic)
    # The audit trail holds refusals (test_ingest_access.py), never an accepted event here.
    actions = {
        json.loads(r.value)["data"]["action"]
        for r in read_all(kafka_bootstrap, server.settings.audit_topic)
    }
    assert "event.accepted" not in actions


@pytest.mark.parametrize("path", [EVENTS, BATCH])
@pytest.mark.parametrize(
    ("caller", "events"),
    [
        ("sender", lambda: [found()]),
        ("sender", lambda: [reported()]),
        ("typed-sender", lambda: [found()]),
    ],
)
def test_the_right_token_is_accepted(
    server: IngestServer, path: str, caller: str, events: Callable[[], list[dict[str, Any]]]
) -> None:
    reply = send(server, path, events(), caller)
    assert reply.status == 202, reply.body


def test_a_batch_names_each_event_of_a_type_not_allowed(
    server: IngestServer, kafka_bootstrap: str
) -> None:
    events = [found(), reported(), found(), reported()]
    reply = send(server, BATCH, events, "typed-sender")
    assert reply.status == 403
    assert [(e["index"], e["loc"]) for e in reply.json["errors"]] == [
        (1, "[1].type"),
        (3, "[3].type"),
    ]
    assert not anything_written(kafka_bootstrap, server.topic)


def test_each_accepted_event_has_an_audit_record_naming_the_token(
    server: IngestServer, kafka_bootstrap: str
) -> None:
    single = found()
    assert send(server, EVENTS, [single], "sender").status == 202
    batch = [found(), found(), reported()]
    assert send(server, BATCH, batch, "sender").status == 202
    assert send(server, EVENTS, [found()], "other-sender").status == 403

    # Five records: four accepted events and the other sender's refusal.
    everything = read_topic(kafka_bootstrap, server.settings.audit_topic, expect=5)
    refusals = [r for r in everything if json.loads(r.value)["data"]["action"] != "event.accepted"]
    assert [json.loads(r.value)["data"]["actor"] for r in refusals] == ["other-sender"]
    records = [r for r in everything if r not in refusals]
    audits = [json.loads(r.value) for r in records]
    assert len(audits) == 4
    assert {(a["data"]["event"]["source"], a["data"]["event"]["id"]) for a in audits} == {
        (SENDER_SOURCE, e["id"]) for e in [single, *batch]
    }
    for audit, record in zip(audits, records, strict=True):
        assert audit["type"] == "audit.recorded"
        assert audit["source"] == "urn:safeguard:ingest"
        assert audit["data"]["action"] == "event.accepted"
        assert audit["data"]["actor"] == "sender"
        # Ids, action, token name and time only: no payload of the event.
        assert set(audit["data"]) == {"action", "actor", "at", "event"}
        assert record.key == f"{SENDER_SOURCE}|{audit['data']['event']['id']}".encode()
    assert len({a["id"] for a in audits}) == 4
