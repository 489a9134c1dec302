"""The notify service's metrics (names `safeguard_notify_*`, in Alertmanager's manner).

Labels are bounded (channel, reason, level), never alert or subject ids.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from schemas.alerts import Severity

# Escalation steps are seconds to hours apart; timing error should be well under a second.
TIMING_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)
ACK_BUCKETS = (60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800)
# Level 1 waits the policy's group window (30 s) before its first attempt; the service
# level is 60 s from the raise, so the buckets are dense around both.
FIRST_ATTEMPT_BUCKETS = (1, 5, 10, 20, 30, 35, 40, 45, 60, 90, 120, 300, 900)
# Areas come from the senders' events: past this many, the rest are counted as "other"
# so that a sender inventing areas cannot multiply the series.
MAX_AREAS = 50
OTHER_AREA = "other"
NO_AREA = "none"
UNRESOLVED_STATUSES = frozenset({"open", "acknowledged"})

# (area, rule, severity, status, escalated): how the index counts its alerts; the gauges
# show the unresolved ones.
AlertGroup = tuple[str, str, str, str, bool]


class NotifyMetrics:
    """Metrics registered on a registry passed in, so tests get a fresh one."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._unresolved = UnresolvedAlerts()
        registry.register(self._unresolved)
        self.notifications = Counter(
            "safeguard_notify_notifications_total",
            "Notifications delivered, by channel.",
            ["channel"],
            registry=registry,
        )
        self.notifications_failed = Counter(
            "safeguard_notify_notifications_failed_total",
            "Notifications that could not be delivered after their retries, by channel and reason.",
            ["channel", "reason"],
            registry=registry,
        )
        self.requests = Counter(
            "safeguard_notify_notification_requests_total",
            "Delivery attempts (requests to a webhook or SMTP relay), by channel.",
            ["channel"],
            registry=registry,
        )
        self.latency = Histogram(
            "safeguard_notify_notification_latency_seconds",
            "Duration of one delivery attempt, by channel.",
            ["channel"],
            registry=registry,
        )
        self.escalations = Counter(
            "safeguard_notify_escalations_total",
            "Alerts that climbed to a level (2 and up), by level.",
            ["level"],
            registry=registry,
        )
        self.alerts_open = Gauge(
            "safeguard_notify_alerts_open",
            "Alerts not yet resolved (open or acknowledged) on this worker's partitions.",
            registry=registry,
        )
        self.alerts_unacknowledged = Gauge(
            "safeguard_notify_alerts_unacknowledged",
            "Alerts nobody has acknowledged or resolved yet on this worker's partitions.",
            registry=registry,
        )
        self.time_to_acknowledge = Histogram(
            "safeguard_notify_time_to_acknowledge_seconds",
            "From an alert's raise to its acknowledgement.",
            buckets=ACK_BUCKETS,
            registry=registry,
        )
        self.timing_error = Histogram(
            "safeguard_notify_escalation_timing_error_seconds",
            "When a scheduled escalation step was taken minus when it was due.",
            buckets=TIMING_BUCKETS,
            registry=registry,
        )
        self.duplicates = Counter(
            "safeguard_notify_duplicates_dropped_total",
            "Messages dropped because they were already processed.",
            registry=registry,
        )
        self.unmatched_outcomes = Counter(
            "safeguard_notify_outcomes_unmatched_total",
            "Delivery outcomes read for an alert the table does not hold (after a crash lost"
            " the alert's write: it is read again and its notification handed over again).",
            registry=registry,
        )
        self.first_attempt_delay = Histogram(
            "safeguard_notify_first_attempt_delay_seconds",
            "From an alert's raise to the start of the first delivery attempt of its level-1"
            " notification, by channel (a grouped message counts once, for its first alert).",
            ["channel"],
            buckets=FIRST_ATTEMPT_BUCKETS,
            registry=registry,
        )

    def count_unresolved(self, source: Callable[[], Mapping[AlertGroup, int]]) -> None:
        """Read the unresolved alerts' counts from `source` at every scrape."""
        self._unresolved.source = source


class UnresolvedAlerts(Collector):
    """Alerts not yet resolved on this worker's partitions, counted when scraped.

    `safeguard_notify_alerts_unresolved{area, rule, severity, status}` feeds the
    dashboard's area and rule filters; `safeguard_notify_alerts_unacknowledged_escalated
    {severity}` counts those nobody acknowledged by their policy's first escalation step
    (level 2 and above): a child's alert that has already gone past the duty manager.
    """

    def __init__(self) -> None:
        self.source: Callable[[], Mapping[AlertGroup, int]] = dict

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Yield both families from the current counts."""
        counts = {
            group: n
            for group, n in self.source().items()
            if n > 0 and group[3] in UNRESOLVED_STATUSES
        }
        areas = sorted({group[0] for group in counts})
        kept = set(areas[:MAX_AREAS])
        unresolved: dict[tuple[str, str, str, str], int] = {}
        escalated: dict[str, int] = {}
        for (area, rule, severity, status, is_escalated), n in counts.items():
            shown = area if area in kept else OTHER_AREA
            key = (shown, rule, severity, status)
            unresolved[key] = unresolved.get(key, 0) + n
            if is_escalated:
                escalated[severity] = escalated.get(severity, 0) + n
        family = GaugeMetricFamily(
            "safeguard_notify_alerts_unresolved",
            f"Alerts open or acknowledged on this worker's partitions, by area ({NO_AREA} when"
            f" unknown, {OTHER_AREA} past {MAX_AREAS} areas), rule, severity and status.",
            labels=["area", "rule", "severity", "status"],
        )
        for labels, n in sorted(unresolved.items()):
            family.add_metric(list(labels), n)
        yield family
        family = GaugeMetricFamily(
            "safeguard_notify_alerts_unacknowledged_escalated",
            "Open alerts nobody acknowledged that have climbed to level 2 or above (past"
            " their policy's first escalation step), by severity.",
            labels=["severity"],
        )
        for severity in Severity:
            family.add_metric([severity.value], escalated.get(severity.value, 0))
        yield family
