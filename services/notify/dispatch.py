"""Deliveries in the background: hand-over, outcome published, and what is still in flight.

Each notification is delivered by a task of its own (at most `max_concurrent` at once),
so a slow receiver never holds up the stream. Its outcome goes back to the stream as a
`notification.sent` / `notification.failed` event on the notifications topic, retried
until the broker has it: while the task runs (and until the stream reads the outcome
back) the notification is *in flight* and never counted as lost, so it is not sent
twice. A worker that dies here leaves it pending; the partition's next owner hands it
over again after its deadline and a grace, under the same id.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any

import structlog

from schemas.notifications import (
    NotificationFailed,
    NotificationPurpose,
    NotificationSent,
    notification_failed_event,
    notification_sent_event,
)
from services.common.stream.inputs import Record
from services.common.stream.retry import OnFailure, RetryPolicy, retry_until_done
from services.notify.delivery import Content, Deliverer, Result
from services.notify.escalation import notification_id
from services.notify.ledger import AlertRecord, PendingDelivery

log = structlog.get_logger(__name__)

Publish = Callable[[Sequence[Record]], Awaitable[None]]


class Dispatcher:
    """Starts deliveries, publishes their outcomes, and knows which are in flight."""

    def __init__(  # noqa: PLR0913 - the dispatcher's collaborators
        self,
        deliverer: Deliverer,
        *,
        publish: Publish,
        notifications_topic: str,
        retry: RetryPolicy,
        on_failure: OnFailure,
        max_concurrent: int,
        public_url: str | None,
    ) -> None:
        self.deliverer = deliverer
        self.publish = publish
        self.notifications_topic = notifications_topic
        self.retry = retry
        self.on_failure = on_failure
        self.public_url = public_url
        self._slots = asyncio.Semaphore(max_concurrent)
        self._tasks: set[asyncio.Task[None]] = set()
        # Notification id -> the task delivering it, until its outcome is read back.
        self._running: dict[str, asyncio.Task[None]] = {}

    def in_flight(self) -> Collection[str]:
        """Return the notifications handed over here whose outcome is not read back yet."""
        return self._running.keys()

    def start(self, record: AlertRecord, pending: PendingDelivery) -> None:
        """Hand a notification to its channel in the background."""
        content = Content.of(record, pending, self.public_url, self.deliverer.presentation)
        # A fresh context: the task must not keep the stream's current event alive.
        task = asyncio.get_running_loop().create_task(
            self._deliver(record.alert.alert_id, content, pending.model_copy()),
            context=contextvars.Context(),
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._running[pending.notification_id] = task
        for member in listed(pending):
            # The listed alerts' notifications travel in this one: not lost meanwhile.
            self._running[member] = task

    def finished(self, notification_id: str) -> None:
        """Forget a notification whose outcome the stream has read back."""
        self._running.pop(notification_id, None)

    def forget_done(self) -> None:
        """Keep only the deliveries still running (after a rebalance).

        Partitions may have moved: a finished delivery's outcome is on the topic for
        whoever owns it now.
        """
        self._running = {k: t for k, t in self._running.items() if not t.done()}

    async def _deliver(self, alert_id: str, content: Content, pending: PendingDelivery) -> None:
        async with self._slots:
            result = await self.deliverer.deliver(content, pending)
        records = outcome_records(self.notifications_topic, alert_id, pending, result)
        await retry_until_done(lambda: self.publish(records), self.retry, self.on_failure)

    async def stop(self) -> None:
        """Cancel what is running: the new owner hands it over again after its grace."""
        for task in list(self._tasks):
            task.cancel()
        await self.deliverer.close()


def listed(pending: PendingDelivery) -> dict[str, str]:
    """Return the other alerts a grouped message lists: alert id -> their notification id."""
    return {
        m.alert_id: notification_id(
            m.alert_id, NotificationPurpose.ALERT, 1, 0, pending.recipient.name
        )
        for m in pending.members[1:]  # the first is the alert the message belongs to
    }


def outcome_records(
    topic: str, alert_id: str, pending: PendingDelivery, result: Result
) -> list[Record]:
    """Return the outcome of a delivery, and one for each alert a grouped message listed.

    Each listed alert learns from its own partition that it was told, and how.
    """
    fields: dict[str, Any] = {
        "notification_id": pending.notification_id,
        "alert_id": alert_id,
        "purpose": pending.purpose,
        "channel": pending.recipient.channel,
        "recipient": pending.recipient.name,
        "level": pending.level,
        "round": pending.round,
        "attempts": result.attempts,
        "first_attempt_at": result.first_attempt_at,
        "finished_at": result.finished_at,
    }
    records = [Record(topic, alert_id.encode(), _outcome(fields, result))]
    for member_alert, member_id in listed(pending).items():
        member = {
            **fields,
            "notification_id": member_id,
            "alert_id": member_alert,
            "grouped_into": pending.notification_id,
        }
        records.append(Record(topic, member_alert.encode(), _outcome(member, result)))
    return records


def _outcome(fields: dict[str, Any], result: Result) -> bytes:
    if result.outcome == "sent":
        return notification_sent_event(NotificationSent(**fields)).to_json()
    failed = NotificationFailed(**fields, reason=result.reason, detail=result.detail)
    return notification_failed_event(failed).to_json()
