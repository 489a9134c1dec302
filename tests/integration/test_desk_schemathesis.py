"""schemathesis against the desk's committed OpenAPI document: a live in-process desk on
the session broker and a real PostgreSQL, its projector filled with alerts, a child, an
outcome, a notification and an audit record, called with the development token (from
config/dev-tokens.yaml, as `make run` uses it); valid and invalid inputs generated from
the document, every response checked against it.

Parameters are drawn from the generated values and from known ones (the projected ids,
periods and formats that parse), so `GET /v1/alerts/{alert_id}`, the acts, the child's
chronology, the reports and the audit search also answer from data, not only with a 404
or a 422.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import schemathesis
from hypothesis import strategies as st

from devtools.broker import create_topics
from devtools.stack import DEV_TOKEN, DEV_TOKENS_FILE
from services.common.clock import FakeClock
from services.common.kafka import Topics
from services.desk.openapi import COMMITTED
from tests.fixtures.broker import produce
from tests.fixtures.desk import DeskServer, desk_settings
from tests.fixtures.postgres import PostgresServer
from tests.fixtures.stack import wait_until
from tests.fixtures.views import (
    T0,
    alert_view,
    alert_view_record,
    audit_record,
    child_view_record,
    outcome_record,
    sent_record,
)

pytestmark = pytest.mark.integration

CHILD = "C-ST-1"
H = timedelta(hours=1)
# Every status, an area and none; the acts meet open, acknowledged and resolved alerts.
VIEWS = [
    alert_view("al-st-open", child_id=CHILD, severity="critical", raised_at=T0 - 3 * H),
    alert_view(
        "al-st-ack",
        child_id=CHILD,
        status="acknowledged",
        acknowledged_by="duty-north",
        raised_at=T0 - 2 * H,
    ),
    alert_view(
        "al-st-closed",
        child_id=CHILD,
        status="resolved",
        raised_at=T0 - 4 * H,
        closed=(T0 - H, "duplicate"),
    ),
    alert_view("al-st-none", area=None, severity="medium", raised_at=T0 - H),
]
# What the document cannot say: values that name projected data or parse (a period, a
# format of the operation's). Drawn besides the generated ones, so answers also come from
# data rather than only a 404 or a 422.
KNOWN: dict[str, list[str]] = {
    "alert_id": [v.alert.alert_id for v in VIEWS],
    "child_id": [CHILD],
    "subject_id": [CHILD],
    "trigger_id": ["ev-al-st-open"],
    "rule": ["social-care-referral"],
    "area": ["north", "south"],
    "order": ["raised", "urgency"],
    "status": ["open", "acknowledged", "resolved"],
    "severity": ["medium", "high", "critical"],
    "subject_kind": ["child", "offender", "enquiry"],
    "principal": ["development"],
    "report": ["timeliness"],
    "from": ["2026-10-01", "2026-11-01T00:00:00Z"],
    "to": ["2026-11-03", "2026-12-01T00:00:00+01:00"],
    "over": ["1h", "25d"],
    "period": ["2026-11", "2026-Q4"],
    "as_of": ["2026-11-02T12:00:00Z"],
}
FORMATS = {
    "/v1/reports/timeliness": ["json", "csv", "html"],
    "/v1/audit": ["json", "csv"],
    "/v1/reports/pack": ["json", "html", "pdf"],
}
NOW = T0 + timedelta(days=1)  # the desk's clock: after the alerts, within the periods


@pytest.fixture(scope="module")
def openapi_desk(kafka_bootstrap: str, postgres: PostgresServer) -> Iterator[DeskServer]:
    suffix = uuid.uuid4().hex[:8]
    topics = Topics(**{k: f"s{suffix}.{v}" for k, v in Topics().model_dump().items()})
    audit_topic = f"s{suffix}.safeguarding.audit.v1"
    create_topics(kafka_bootstrap, [*topics.model_dump().values(), audit_topic])
    produce(kafka_bootstrap, topics.alert_views, [alert_view_record(v) for v in VIEWS])
    produce(kafka_bootstrap, topics.child_views, [child_view_record(CHILD)])
    produce(
        kafka_bootstrap,
        topics.outcomes,
        [outcome_record("al-st-open", "opened", due_at=T0 - 4 * H, child_id=CHILD)],
    )
    produce(kafka_bootstrap, topics.notifications, [sent_record("al-st-open")])
    produce(kafka_bootstrap, audit_topic, [audit_record(child_id=CHILD, actor="reader")])
    url = postgres.create()
    settings = desk_settings(
        database_url=url,
        bootstrap=kafka_bootstrap,
        topics=topics,
        audit_topic=audit_topic,
        group=f"desk-st-{suffix}",
        tokens_file=DEV_TOKENS_FILE,
    )
    desk = DeskServer(settings, clock=FakeClock(NOW)).start()
    try:
        projected = ("alert_views", "child_views", "outcomes", "notifications")
        assert wait_until(
            lambda: (
                sum(
                    desk.metric("safeguard_desk_projector_records_total", topic=t)
                    for t in projected
                )
                >= len(VIEWS) + 3
            ),
            timeout=60,
        ), "the projector did not catch up"
        yield desk
    finally:
        desk.stop()
        postgres.drop(url)


# The committed document, as other teams read it (the served one is checked equal to it
# in test_desk_api.py). Loaded eagerly: schemathesis' lazy `from_fixture` does not run on
# pytest 9.
schema = schemathesis.openapi.from_path(
    COMMITTED,
    config=schemathesis.Config.from_dict(
        {
            # Through the document's security scheme, so schemathesis also tries bad tokens.
            "auth": {"openapi": {"bearer": {"bearer": DEV_TOKEN}}},
            # Bounded: every case is a request, an audit record published and a database
            # read on a shared two-core machine; 30 per operation and mode keep the module
            # well under a minute.
            "generation": {"max-examples": 30, "mode": "all", "database": "none"},
            # Some rules cannot be written in JSON Schema (a period that parses, `from`
            # before `to`, a cursor the desk issued, `as_of` not ahead of now): requests
            # valid by the document may rightly get 422. Every other check stays on.
            "checks": {"positive_data_acceptance": {"enabled": False}},
            # The coverage phase enumerates every boundary of every parameter: minutes
            # here; tests/integration/test_desk_api.py tests the refusals one by one.
            "phases": {"coverage": {"enabled": False}},
        }
    ),
)


def with_known(
    strategy: st.SearchStrategy[Any],
    context: schemathesis.HookContext,
    location: str,
    known: dict[str, list[str]],
) -> st.SearchStrategy[Any]:
    """Return `strategy`, or its draws with the known parameters drawn from `known`."""
    operation = context.operation
    if operation is None:
        return strategy
    parameters = operation.path_parameters if location == "path" else operation.query
    names = [p.name for p in parameters if p.name in known]
    if not names:
        return strategy
    chosen = {name: st.sampled_from(known[name]) for name in names}
    # Path parameters are required; a query's known ones may each be there or not.
    values = (
        st.fixed_dictionaries(chosen)
        if location == "path"
        else st.fixed_dictionaries({}, optional=chosen)
    )

    def replaced(drawn: Any) -> st.SearchStrategy[Any]:
        if not isinstance(drawn, dict):
            # Negative mode's values (mutations, wrapped with what they mutated): as drawn.
            return st.just(drawn)
        # The rest (a limit) as generated; a cursor only reads when the desk issued it
        # (test_desk_api.py pages with them).
        rest = {k: v for k, v in drawn.items() if k not in known and k != "cursor"}
        return values.map(lambda given: {**rest, **given})

    return st.one_of(strategy, strategy.flatmap(replaced))


@schema.hook
def before_generate_path_parameters(
    context: schemathesis.HookContext, strategy: st.SearchStrategy[Any]
) -> st.SearchStrategy[Any]:
    return with_known(strategy, context, "path", KNOWN)


@schema.hook
def before_generate_query(
    context: schemathesis.HookContext, strategy: st.SearchStrategy[Any]
) -> st.SearchStrategy[Any]:
    path = context.operation.path if context.operation is not None else ""
    return with_known(strategy, context, "query", {**KNOWN, "format": FORMATS.get(path, ["json"])})


# The desk under test runs in this process: its libraries (the Kafka client's node
# choice, the database pool) draw from the global `random` while examples are generated.
@pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")
@schema.parametrize()
def test_desk_conforms_to_its_openapi_document(
    case: schemathesis.Case[Any], openapi_desk: DeskServer
) -> None:
    response = case.call_and_validate(base_url=openapi_desk.url)
    assert response.status_code < 500
