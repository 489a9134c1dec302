"""The desk's audit records: each read and act recorded before it is served or done.

One `audit.recorded` CloudEvent per action on `safeguarding.audit.v1` (source
`urn:safeguard:desk`), sent through the desk's producer and awaited: a read whose record
the broker did not take is answered 503, not served, and an act is not published.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterable, Mapping

import structlog

from schemas.audit import AuditAction, Listing
from services.common.audit import audit_record, refused_request
from services.common.auth import Principal
from services.common.clock import Clock
from services.desk.broker import Publisher
from services.desk.sessions import Session, SessionStore

log = structlog.get_logger(__name__)


class Auditor:
    """Records who did what to which thing, and waits until the broker has it."""

    def __init__(self, publisher: Publisher, topic: str, clock: Clock) -> None:
        self.publisher = publisher
        self.topic = topic
        self.clock = clock
        self._background: set[asyncio.Task[None]] = set()

    async def record(
        self,
        action: AuditAction,
        principal: Principal,
        *,
        child_id: str | None = None,
        alert_id: str | None = None,
        searched_principal: str | None = None,
    ) -> None:
        """Publish one record; raises BrokerUnavailable when the broker did not take it."""
        key, value = audit_record(
            "desk",
            action,
            principal,
            self.clock.now(),
            child_id=child_id,
            alert_id=alert_id,
            searched_principal=searched_principal,
        )
        await self.publisher.publish(self.topic, key, value, what="the audit record")

    async def record_list(self, principal: Principal, shown: Listing) -> None:
        """Publish the `alerts.listed` record of a list: its filters and the ids it showed."""
        key, value = audit_record(
            "desk", AuditAction.ALERTS_LISTED, principal, self.clock.now(), listing=shown
        )
        await self.publisher.publish(self.topic, key, value, what="the audit record")

    def refused(self, actor: str, status: int, route: str) -> None:
        """Record a refused request in the background (the refusal is answered at once)."""
        key, value = refused_request("desk", actor, status, route, self.clock.now())
        task = asyncio.get_running_loop().create_task(self._publish_refusal(key, value))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _publish_refusal(self, key: bytes, value: bytes) -> None:
        try:
            await self.publisher.publish(self.topic, key, value, what="the audit record")
        except Exception as error:  # noqa: BLE001 - logged; the refusal stands regardless
            log.warning("refusal_not_audited", error=type(error).__name__)


def listing(filters: Mapping[str, str | None], alert_ids: Iterable[str]) -> Listing:
    """Return what a list of alerts showed: the filters given and the ids, in order."""
    return Listing(filters={k: v for k, v in filters.items() if v}, alert_ids=list(alert_ids))


async def audit_list(
    auditor: Auditor, sessions: SessionStore, session: Session, shown: Listing
) -> None:
    """Record a list a console session showed, unless it recorded this very list lately.

    A queue polled every few seconds is recorded when its filters or the alerts it
    returns change, and otherwise once per `sessions.RELIST_AFTER`: the trail says who
    could see what and since when, without one record per poll.
    """
    fingerprint = hashlib.sha256(
        json.dumps(shown.model_dump(mode="json"), sort_keys=True).encode()
    ).hexdigest()
    if await sessions.listing_due(session, fingerprint):
        await auditor.record_list(session.principal, shown)
        await sessions.listed(session, fingerprint)
