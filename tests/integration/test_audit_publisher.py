"""The Faust services' audit publisher, through a real Faust producer and the session broker.

Each kind of action the risk and notify pages record is published with
`publish_audit` and read back from the topic: one record each, ids and the token's name
only, keyed by the thing acted on. (Ingest's records are read back in
test_ingest_authorisation.py.)
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import faust
import pytest

from devtools.broker import create_topics, free_port
from schemas.audit import AuditAction
from services.common.audit import is_identifier, publish_audit
from services.common.auth import Principal, Role
from services.common.kafka import KafkaSettings
from services.common.streams import StreamSettings, faust_options, raw_topic
from tests.fixtures.broker import read_topic

pytestmark = pytest.mark.integration

DUTY = Principal(
    name="duty-north",
    sources=(),
    roles=frozenset({Role.READ, Role.ACKNOWLEDGE, Role.RESOLVE}),
    areas=frozenset({"north"}),
)
AT = datetime(2026, 11, 20, 21, 14, tzinfo=UTC)

# (service, action, ids): what the pages will record.
ACTIONS = [
    ("risk", AuditAction.CHILD_VIEWED, {"child_id": "C-1"}),
    ("notify", AuditAction.ALERTS_LISTED, {}),
    ("notify", AuditAction.ALERT_VIEWED, {"alert_id": "al-1"}),
    ("notify", AuditAction.ALERT_ACKNOWLEDGED, {"alert_id": "al-1"}),
    ("notify", AuditAction.ALERT_RESOLVED, {"alert_id": "al-1"}),
    ("notify", AuditAction.ALERT_NOTED, {"alert_id": "al-1"}),
]


def test_every_page_action_is_published_and_read_back(kafka_bootstrap: str, tmp_path: Path) -> None:
    topic_name = f"audit.{uuid.uuid4().hex[:8]}"
    create_topics(kafka_bootstrap, [topic_name])

    async def publish_all() -> None:
        app = faust.App(
            f"audit-test-{uuid.uuid4().hex[:6]}",
            **faust_options(
                KafkaSettings(bootstrap_servers=kafka_bootstrap),
                StreamSettings(store="memory://", data_dir=tmp_path),
                web_host="127.0.0.1",
                web_port=free_port(),
            ),
        )
        topic = raw_topic(app, topic_name)
        await app.producer.start()
        try:
            for service, action, ids in ACTIONS:
                await publish_audit(topic, service, action, DUTY, AT, **ids)
        finally:
            await app.producer.stop()

    asyncio.run(publish_all())
    records = read_topic(kafka_bootstrap, topic_name, expect=len(ACTIONS))
    assert len(records) == len(ACTIONS)
    seen = {}
    for record in records:
        event = json.loads(record.value)
        seen[event["data"]["action"]] = (record.key, event)
    assert set(seen) == {action.value for _, action, _ in ACTIONS}
    for service, action, ids in ACTIONS:
        key, event = seen[action.value]
        assert event["type"] == "audit.recorded"
        assert event["source"] == f"urn:safeguard:{service}"
        assert event["data"] == {
            "action": action.value,
            "actor": "duty-north",
            "at": "2026-11-20T21:14:00Z",
            **ids,
        }
        assert key == next(iter(ids.values()), "").encode()


def test_only_identifiers_can_be_audited() -> None:
    # The pages answer 404 for a path segment that is not an identifier, unrecorded.
    assert is_identifier("C-1")
    assert is_identifier("al-0123abcd")
    assert not is_identifier("Jane Doe")
    assert not is_identifier("")
    assert not is_identifier("x" * 65)
