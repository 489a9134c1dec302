"""What a notify worker keeps about the alerts it owns, beside the table: no reads for people.

Alerts are indexed by trigger event, so that level 1 can be grouped with the alerts the
same event raised (`services.notify.escalation`), and counted for the gauges (open,
unacknowledged, unresolved by area, rule, severity and status). The logic keeps the
index in step with every write and rebuilds it with the schedule after a rebalance, so
it covers exactly the partitions this worker owns. What people read is the desk's.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

from services.notify.ledger import AlertRecord, AlertStatus
from services.notify.metrics import NO_AREA, AlertGroup, NotifyMetrics


@dataclass(frozen=True)
class AlertSummary:
    """What the index keeps of an alert."""

    trigger: tuple[str, str]
    status: AlertStatus
    group: AlertGroup

    @classmethod
    def of(cls, record: AlertRecord) -> AlertSummary:
        """Summarise a record."""
        alert = record.alert
        return cls(
            trigger=(alert.trigger.source, alert.trigger.id),
            status=record.status,
            # The unresolved-alert gauges' group (they skip resolved alerts).
            group=(
                alert.area or NO_AREA,
                alert.rule,
                alert.severity.value,
                record.status.value,
                record.status is AlertStatus.OPEN and record.level >= 2,  # noqa: PLR2004 - level 2 is the first escalation step
            ),
        )


class AlertIndex:
    """This worker's alerts by trigger, and the open/unacknowledged/unresolved gauges."""

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
            self._unresolved[old.group] -= 1
        if record is not None:
            new = AlertSummary.of(record)
            self._summaries[alert_id] = new
            self._by_status[record.status] += 1
            self._by_trigger[new.trigger].add(alert_id)
            self._unresolved[new.group] += 1
        self._refresh()

    def same_trigger(self, source: str, event_id: str) -> set[str]:
        """Return the ids of this worker's alerts raised by one trigger event."""
        return set(self._by_trigger.get((source, event_id), ()))

    def clear(self) -> None:
        """Forget everything (before a rebuild)."""
        self._summaries.clear()
        self._by_status.clear()
        self._by_trigger.clear()
        self._unresolved.clear()
        self._refresh()

    def _refresh(self) -> None:
        open_ = self._by_status[AlertStatus.OPEN]
        self._metrics.alerts_open.set(open_ + self._by_status[AlertStatus.ACKNOWLEDGED])
        self._metrics.alerts_unacknowledged.set(open_)
