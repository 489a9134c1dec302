"""The alert list's read model: one small summary per alert this worker owns.

`GET /v1/alerts` filters and pages these summaries instead of parsing every record in the
table. The processor keeps the index in step with every write and rebuilds it with the
schedule after a rebalance, so it covers exactly the partitions this worker owns.

The console's work queue pages the same summaries in another order (`urgent_page`):
severity first, then how overdue (the earliest due time first; a pattern alert without
one counts from its raise). Alerts are also indexed by trigger event, so that level 1
can be grouped with the alerts the same event raised (`services.notify.escalation`).
"""

from __future__ import annotations

import base64
import binascii
import heapq
import json
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from schemas.alerts import Severity
from services.notify.ledger import AlertRecord, AlertStatus
from services.notify.metrics import NO_AREA, AlertGroup, NotifyMetrics

MAX_PAGE = 500


@dataclass(frozen=True)
class AlertSummary:
    """An alert's line in the list."""

    alert_id: str
    rule: str
    severity: str
    status: AlertStatus
    level: int
    raised_at: datetime
    due_at: datetime | None
    summary: str
    subject_kind: str
    subject_id: str
    area: str | None
    trigger: tuple[str, str] = ("", "")
    acknowledged_by: str | None = None
    reopened: bool = False

    @property
    def overdue_since(self) -> datetime:
        """Return when the alert became overdue: its due time, or its raise for a pattern."""
        return self.due_at or self.raised_at

    @classmethod
    def of(cls, record: AlertRecord) -> AlertSummary:
        """Summarise a record."""
        alert = record.alert
        return cls(
            alert_id=alert.alert_id,
            rule=alert.rule,
            severity=alert.severity.value,
            status=record.status,
            level=record.level,
            raised_at=alert.raised_at,
            due_at=alert.due_at,
            summary=alert.summary,
            subject_kind=alert.subject_kind.value,
            subject_id=alert.subject_id,
            area=alert.area,
            trigger=(alert.trigger.source, alert.trigger.id),
            acknowledged_by=record.acknowledgement.by if record.acknowledgement else None,
            reopened=record.reopened_at is not None and record.status is AlertStatus.OPEN,
        )

    def public(self) -> dict[str, Any]:
        """Return the JSON the API shows."""
        return {
            "alert_id": self.alert_id,
            "rule": self.rule,
            "severity": self.severity,
            "status": self.status.value,
            "level": self.level,
            "raised_at": self.raised_at.isoformat(),
            "due_at": self.due_at.isoformat() if self.due_at else None,
            "summary": self.summary,
            "subject_kind": self.subject_kind,
            "subject_id": self.subject_id,
            "area": self.area,
        }

    def order(self) -> tuple[float, str]:
        """Return the sort key: newest first, then by id, so pages are stable."""
        return (-self.raised_at.timestamp(), self.alert_id)

    def urgency(self) -> tuple[int, float, str]:
        """Return the work queue's key: most severe, then most overdue, then by id."""
        rank = Severity(self.severity).rank if self.severity in set(Severity) else -1
        return (-rank, self.overdue_since.timestamp(), self.alert_id)


@dataclass(frozen=True)
class AlertFilter:
    """What `GET /v1/alerts` may filter on; None matches everything."""

    status: AlertStatus | None = None
    statuses: frozenset[AlertStatus] | None = None
    rule: str | None = None
    severity: str | None = None
    area: str | None = None
    visible: Callable[[str | None], bool] = lambda _area: True

    def __call__(self, s: AlertSummary) -> bool:
        """Tell whether a summary matches."""
        return (
            (self.status is None or s.status is self.status)
            and (self.statuses is None or s.status in self.statuses)
            and (self.rule is None or s.rule == self.rule)
            and (self.severity is None or s.severity == self.severity)
            and (self.area is None or s.area == self.area)
            and self.visible(s.area)
        )


class InvalidCursor(ValueError):
    """A cursor this service did not issue."""


def encode_cursor(summary: AlertSummary) -> str:
    """Return the opaque cursor that continues after `summary`."""
    return cursor_at(summary.raised_at, summary.alert_id)


def cursor_at(raised_at: datetime, alert_id: str) -> str:
    """Return the opaque cursor that continues the list after the alert raised then."""
    raw = json.dumps([raised_at.timestamp(), alert_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def encode_urgent_cursor(summary: AlertSummary) -> str:
    """Return the opaque cursor that continues the work queue after `summary`."""
    raw = json.dumps(list(summary.urgency())).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_urgent_cursor(cursor: str) -> tuple[int, float, str]:
    """Return the work-queue key a cursor continues after."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        rank, overdue, alert_id = json.loads(raw)
        return (int(rank), float(overdue), str(alert_id))
    except (ValueError, TypeError, binascii.Error) as exc:
        raise InvalidCursor("the cursor is not one this service issued") from exc


def decode_cursor(cursor: str) -> tuple[float, str]:
    """Return the sort key a cursor continues after."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        timestamp, alert_id = json.loads(raw)
        return (-float(timestamp), str(alert_id))
    except (ValueError, TypeError, binascii.Error) as exc:
        raise InvalidCursor("the cursor is not one this service issued") from exc


def _group(summary: AlertSummary) -> AlertGroup:
    """Return the group the unresolved-alert gauges count a summary in (they skip resolved)."""
    return (
        summary.area or NO_AREA,
        summary.rule,
        summary.severity,
        summary.status.value,
        summary.status is AlertStatus.OPEN and summary.level >= 2,  # noqa: PLR2004 - level 2 is the first escalation step
    )


class AlertIndex:
    """Summaries of this worker's alerts, and the open/unacknowledged gauges."""

    def __init__(self, metrics: NotifyMetrics) -> None:
        self._metrics = metrics
        self._summaries: dict[str, AlertSummary] = {}
        self._by_status: Counter[AlertStatus] = Counter()
        self._by_trigger: defaultdict[tuple[str, str], set[str]] = defaultdict(set)
        self._unresolved: Counter[AlertGroup] = Counter()
        metrics.count_unresolved(lambda: self._unresolved)

    def __len__(self) -> int:
        return len(self._summaries)

    def put(self, alert_id: str, record: AlertRecord | None) -> None:
        """Note a record as written (None: it left the table)."""
        old = self._summaries.pop(alert_id, None)
        if old is not None:
            self._by_status[old.status] -= 1
            ids = self._by_trigger[old.trigger]
            ids.discard(alert_id)
            if not ids:
                del self._by_trigger[old.trigger]
            self._unresolved[_group(old)] -= 1
        if record is not None:
            new = AlertSummary.of(record)
            self._summaries[alert_id] = new
            self._by_status[record.status] += 1
            self._by_trigger[new.trigger].add(alert_id)
            self._unresolved[_group(new)] += 1
        self._refresh()

    def same_trigger(self, source: str, event_id: str) -> set[str]:
        """Return the ids of this worker's alerts raised by one trigger event."""
        return set(self._by_trigger.get((source, event_id), ()))

    def subject(self, kind: str, subject_id: str) -> list[AlertSummary]:
        """Return this worker's alerts about one child (offender, enquiry), newest first."""
        found = [
            s
            for s in self._summaries.values()
            if s.subject_kind == kind and s.subject_id == subject_id
        ]
        return sorted(found, key=AlertSummary.order)

    def get(self, alert_id: str) -> AlertSummary | None:
        """Return one alert's summary, if this worker owns it."""
        return self._summaries.get(alert_id)

    def urgent_page(
        self, matches: AlertFilter, limit: int, after: tuple[int, float, str] | None = None
    ) -> tuple[list[AlertSummary], str | None]:
        """Return the work queue's page: most severe, then most overdue, after the cursor."""
        candidates = (
            s
            for s in self._summaries.values()
            if matches(s) and (after is None or s.urgency() > after)
        )
        found = heapq.nsmallest(limit + 1, candidates, key=AlertSummary.urgency)
        if len(found) > limit:
            return found[:limit], encode_urgent_cursor(found[limit - 1])
        return found, None

    def severity_counts(self, matches: AlertFilter) -> dict[str, int]:
        """Return how many matching alerts there are of each severity, most severe first."""
        counts = Counter(s.severity for s in self._summaries.values() if matches(s))
        return {sev.value: counts.get(sev.value, 0) for sev in sorted(Severity, reverse=True)}

    def choices(self, matches: AlertFilter) -> dict[str, list[str]]:
        """Return the areas and rules present among matching alerts (the filters' options)."""
        seen = [s for s in self._summaries.values() if matches(s)]
        return {
            "area": sorted({s.area for s in seen if s.area is not None}),
            "rule": sorted({s.rule for s in seen}),
        }

    def clear(self) -> None:
        """Forget everything (before a rebuild)."""
        self._summaries.clear()
        self._by_status.clear()
        self._by_trigger.clear()
        self._unresolved.clear()
        self._refresh()

    def page(
        self, matches: AlertFilter, limit: int, after: tuple[float, str] | None = None
    ) -> tuple[list[AlertSummary], str | None]:
        """Return up to `limit` matching summaries after the cursor, and the next cursor."""
        candidates = (
            s
            for s in self._summaries.values()
            if matches(s) and (after is None or s.order() > after)
        )
        found = heapq.nsmallest(limit + 1, candidates, key=AlertSummary.order)
        if len(found) > limit:
            return found[:limit], encode_cursor(found[limit - 1])
        return found, None

    def _refresh(self) -> None:
        open_ = self._by_status[AlertStatus.OPEN]
        self._metrics.alerts_open.set(open_ + self._by_status[AlertStatus.ACKNOWLEDGED])
        self._metrics.alerts_unacknowledged.set(open_)
