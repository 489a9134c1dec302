"""Acknowledge and resolve as the API and the console share them (`AlertActions`): who may,
in which state, what is recorded first and what is published. The broker and the audit
trail are stand-ins that record what they are given (pure logic under test)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry

from schemas.alerts import AlertRaised, EventRef, Severity, SubjectKind
from schemas.audit import AuditAction
from schemas.notifications import Channel
from services.common.audit import AuditUnavailable
from services.common.auth import Principal, Role
from services.common.clock import FakeClock
from services.notify.escalation import open_record
from services.notify.http import ActionRequest, ActionResult, AlertActions, AlertReads
from services.notify.index import AlertIndex
from services.notify.ledger import AlertRecord, AlertStatus
from services.notify.metrics import NotifyMetrics
from services.notify.policy import Chain, ChainLevel, Recipient

T0 = datetime(2026, 11, 20, 21, 0, tzinfo=UTC)
DESK = Recipient(name="duty-desk", channel=Channel.WEBHOOK, url="http://x/h", secret="s")
CHAIN = Chain(levels=(ChainLevel(level=1, route="duty", after=timedelta(0), recipients=(DESK,)),))
ACTING = frozenset({Role.READ, Role.ACKNOWLEDGE, Role.RESOLVE})


def principal(roles: frozenset[Role] = ACTING, areas: frozenset[str] | None = None) -> Principal:
    return Principal(name="duty", sources=(), roles=roles, areas=areas)


class Harness:
    def __init__(self, *, audit_fails: bool = False) -> None:
        self.records: dict[str, AlertRecord] = {}
        self.audited: list[tuple[AuditAction, str | None]] = []
        self.published: list[tuple[str, dict[str, object]]] = []
        self.audit_fails = audit_fails
        reads = AlertReads(
            index=AlertIndex(NotifyMetrics(CollectorRegistry())),
            get=self.records.get,
            partitions=lambda: {0},
        )
        self.actions = AlertActions(
            reads, clock=FakeClock(T0), publish=self.publish, audit=self.audit
        )

    def raise_alert(self, alert_id: str = "al-1", area: str = "north") -> AlertRecord:
        alert = AlertRaised(
            alert_id=alert_id,
            rule="welfare-check",
            severity=Severity.HIGH,
            subject_kind=SubjectKind.CHILD,
            child_id="C-1",
            area=area,
            trigger=EventRef(source="urn:x", id="e-1"),
            raised_at=T0,
            summary="No welfare check.",
        )
        record = open_record(alert, CHAIN, T0)
        self.records[alert_id] = record
        return record

    async def publish(self, key: str, value: bytes) -> None:
        self.published.append((key, json.loads(value)))

    async def audit(self, action: AuditAction, _who: Principal, alert_id: str | None) -> None:
        if self.audit_fails:
            raise AuditUnavailable("broker away")
        self.audited.append((action, alert_id))

    def act(self, who: Principal, role: Role, body: ActionRequest) -> ActionResult:
        return asyncio.run(self.actions.act(who, "al-1", role, body))


def test_resolving_with_a_reason_records_first_then_publishes_the_reason() -> None:
    h = Harness()
    h.raise_alert()
    body = ActionRequest.model_validate({"reason": "fulfilled_elsewhere", "note": "in CMS"})
    result = h.act(principal(), Role.RESOLVE, body)
    assert result.status == 202
    assert h.audited == [(AuditAction.ALERT_RESOLVED, "al-1"), (AuditAction.ALERT_NOTED, "al-1")]
    ((key, event),) = h.published
    assert key == "al-1"
    assert event["type"] == "alert.closed"
    assert event["data"]["reason"] == "fulfilled_elsewhere"  # type: ignore[index]


def test_a_reason_is_for_resolving_only() -> None:
    h = Harness()
    h.raise_alert()
    body = ActionRequest.model_validate({"reason": "duplicate"})
    assert h.act(principal(), Role.ACKNOWLEDGE, body).status == 422
    assert h.published == []


def test_refusals_publish_nothing_and_record_nothing() -> None:
    h = Harness()
    record = h.raise_alert()
    reader = principal(frozenset({Role.READ}))
    south = principal(areas=frozenset({"south"}))
    assert h.act(reader, Role.ACKNOWLEDGE, ActionRequest()).status == 403
    assert h.act(south, Role.ACKNOWLEDGE, ActionRequest()).status == 403
    record.status = AlertStatus.ACKNOWLEDGED
    conflict = h.act(principal(), Role.ACKNOWLEDGE, ActionRequest())
    assert (conflict.status, conflict.current) == (409, AlertStatus.ACKNOWLEDGED)
    assert (
        asyncio.run(h.actions.act(principal(), "al-x", Role.RESOLVE, ActionRequest())).status == 404
    )
    assert h.published == []
    assert h.audited == []


def test_an_action_that_cannot_be_recorded_is_not_done() -> None:
    h = Harness(audit_fails=True)
    h.raise_alert()
    assert h.act(principal(), Role.ACKNOWLEDGE, ActionRequest()).status == 503
    assert h.published == []
