"""The desk's audit records: each read and act recorded before it is served or done.

One `audit.recorded` CloudEvent per action on `safeguarding.audit.v1` (source
`urn:safeguard:desk`), sent through the desk's producer and awaited: a read whose record
the broker did not take is answered 503, not served, and an act is not published.
"""

from __future__ import annotations

from schemas.audit import AuditAction
from services.common.audit import audit_record
from services.common.auth import Principal
from services.common.clock import Clock
from services.desk.broker import Publisher


class Auditor:
    """Records who did what to which thing, and waits until the broker has it."""

    def __init__(self, publisher: Publisher, topic: str, clock: Clock) -> None:
        self.publisher = publisher
        self.topic = topic
        self.clock = clock

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
