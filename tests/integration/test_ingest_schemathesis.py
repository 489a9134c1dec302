"""schemathesis against the served OpenAPI document: a live server on the session broker,
the development token (from config/dev-tokens.yaml, as `make run` uses it), valid and
invalid inputs generated from the document, every response checked against it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import schemathesis

from devtools.broker import create_topics
from devtools.stack import DEV_TOKEN, DEV_TOKENS_FILE
from services.ingest.openapi import COMMITTED
from tests.fixtures.ingest import IngestServer, audit_topic_of, ingest_settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def openapi_server(kafka_bootstrap: str) -> Iterator[IngestServer]:
    topic = f"ingest.schemathesis.{uuid.uuid4().hex[:8]}"
    create_topics(kafka_bootstrap, [topic, audit_topic_of(topic)])
    settings = ingest_settings(kafka_bootstrap, topic, tokens=None, tokens_file=DEV_TOKENS_FILE)
    server = IngestServer(settings).start()
    yield server
    server.stop()


# The committed document, as other teams read it (the served one is checked equal to it).
# Loaded eagerly: schemathesis' lazy `from_fixture` does not run on pytest 9.
schema = schemathesis.openapi.from_path(
    COMMITTED,
    config=schemathesis.Config.from_dict(
        {
            # Through the document's security scheme, so schemathesis also tries bad tokens.
            "auth": {"openapi": {"bearer": {"bearer": DEV_TOKEN}}},
            # Bounded: 50 cases per operation and mode, a few seconds in all.
            "generation": {"max-examples": 50, "mode": "all", "database": "none"},
            # Some rules cannot be written in JSON Schema: `time` at most 5 minutes ahead of
            # the receiver's clock, distinct child ids, binary mode (ce-* headers) making the
            # body `data`. Schema-valid requests may rightly get 422, so this one check is off;
            # every other (no 5xx, documented statuses, headers and bodies, invalid input
            # refused) stays on.
            "checks": {"positive_data_acceptance": {"enabled": False}},
            # The coverage phase enumerates every boundary case of the 15 event schemas:
            # about 50 s here, too long for every run; the fuzz in test_ingest_fuzz.py covers
            # malformed input in depth instead.
            "phases": {"coverage": {"enabled": False}},
        }
    ),
)


@schema.parametrize()
def test_ingest_conforms_to_its_openapi_document(
    case: schemathesis.Case, openapi_server: IngestServer
) -> None:
    response = case.call_and_validate(base_url=openapi_server.url)
    assert response.status_code < 500
