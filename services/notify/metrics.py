"""The notify service's metrics (names `safeguard_notify_*`, labels bounded)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


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
            "Notifications that could not be delivered, by channel and reason.",
            ["channel", "reason"],
            registry=registry,
        )
        self.duplicates = Counter(
            "safeguard_notify_duplicates_dropped_total",
            "Alert messages dropped because they were already processed.",
            registry=registry,
        )
        self.deadlettered = Counter(
            "safeguard_notify_deadlettered_total",
            "Messages sent to the dead-letter topic, by reason.",
            ["reason"],
            registry=registry,
        )
