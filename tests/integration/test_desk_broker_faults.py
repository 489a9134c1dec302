"""The broker goes silent under a running desk (a network partition, then refused
connections): reads and acts answer 503 `broker_unavailable` in bounded time (their
audit record cannot be kept, so nothing is served or done), the database side keeps
answering what needs no record (`/readyz`), and once the network heals the projector,
without a restart, projects what was published meanwhile and the pages answer again.

The broker sits behind the test's proxy (tests/fixtures/netproxy.py).
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from kafka import KafkaProducer

from devtools.stack import DEV_TOKEN
from services.common.kafka import Topics
from tests.fixtures import loopback
from tests.fixtures.desk import DeskServer, desk_settings
from tests.fixtures.netproxy import ProxiedBroker
from tests.fixtures.postgres import PostgresServer
from tests.fixtures.stack import wait_until
from tests.fixtures.views import alert_view, alert_view_record

pytestmark = pytest.mark.integration

PUBLISH_TIMEOUT = 2.0
SLACK = 3.0  # scheduling on a loaded 2-core machine
NOW = datetime.now(UTC)
AUTH = {"Authorization": f"Bearer {DEV_TOKEN}"}


def produce(bootstrap: str, topic: str, views: list[object]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for view in views:
            key, value = alert_view_record(view)  # type: ignore[arg-type]
            producer.send(topic, key=key, value=value).get(10)
    finally:
        producer.close()


def listed(url: str) -> set[str] | None:
    answer = loopback.get(f"{url}/v1/alerts?limit=500", headers=AUTH, timeout=30)
    return {a["alert_id"] for a in answer.json()["alerts"]} if answer.status_code == 200 else None


def test_a_silent_broker_is_a_bounded_503_and_projection_resumes_after(
    proxied_broker: ProxiedBroker, postgres: PostgresServer
) -> None:
    suffix = uuid.uuid4().hex[:8]
    topics = Topics(**{k: f"f{suffix}.{v}" for k, v in Topics().model_dump().items()})
    audit_topic = f"f{suffix}.safeguarding.audit.v1"
    proxied_broker.create_topics([*topics.model_dump().values(), audit_topic])
    before = [
        alert_view(f"al-f-{n:02d}", raised_at=NOW - n * timedelta(hours=1)) for n in range(20)
    ]
    after = [alert_view(f"al-g-{n:02d}", raised_at=NOW - n * timedelta(hours=1)) for n in range(20)]
    produce(proxied_broker.bootstrap, topics.alert_views, before)
    url = postgres.create()
    desk = DeskServer(
        desk_settings(
            database_url=url,
            bootstrap=proxied_broker.bootstrap,
            topics=topics,
            audit_topic=audit_topic,
            group=f"faults-{suffix}",
            publish_timeout_seconds=PUBLISH_TIMEOUT,
        )
    ).start()
    try:
        first = {v.alert.alert_id for v in before}
        assert wait_until(lambda: listed(desk.url) == first, timeout=60)

        for fault in (proxied_broker.proxy.partition, proxied_broker.proxy.refuse):
            fault()
            started = time.monotonic()
            read = loopback.get(f"{desk.url}/v1/alerts", headers=AUTH, timeout=30)
            assert read.status_code == 503, read.text
            assert read.json()["error"] == "broker_unavailable"
            assert read.headers["Retry-After"] == "5"
            assert time.monotonic() - started < PUBLISH_TIMEOUT + SLACK
            act = loopback.post(
                f"{desk.url}/v1/alerts/al-f-00/ack", json={}, headers=AUTH, timeout=30
            )
            assert act.status_code == 503, act.text
            # What needs no record still answers: the database is there.
            assert loopback.get(f"{desk.url}/readyz", timeout=10).status_code == 200
            proxied_broker.proxy.heal()

        produce(proxied_broker.bootstrap, topics.alert_views, after)
        everything = first | {v.alert.alert_id for v in after}
        assert wait_until(lambda: listed(desk.url) == everything, timeout=90)
        assert desk.metric("safeguard_desk_unavailable_total", dependency="broker") >= 4
    finally:
        desk.stop()
        postgres.drop(url)
