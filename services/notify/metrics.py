"""The notify service's metrics (names `safeguard_notify_*`, in Alertmanager's manner).

Labels are bounded (channel, reason, level), never alert or subject ids.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Escalation steps are seconds to hours apart; timing error should be well under a second.
TIMING_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)
ACK_BUCKETS = (60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800)


class NotifyMetrics:
    """Metrics registered on a registry passed in, so tests get a fresh one."""

    def __init__(self, registry: CollectorRegistry) -> None:
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
