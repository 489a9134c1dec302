"""The risk service's metrics (names `safeguard_risk_*`, labels bounded)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class RiskMetrics:
    """Metrics registered on a registry passed in, so tests get a fresh one."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "safeguard_risk_events_processed_total",
            "Events applied to subject state, by type.",
            ["type"],
            registry=registry,
        )
        self.duplicates = Counter(
            "safeguard_risk_duplicates_dropped_total",
            "Events dropped because their (source, id) was already processed.",
            registry=registry,
        )
        self.deadlettered = Counter(
            "safeguard_risk_deadlettered_total",
            "Messages sent to the dead-letter topic, by reason.",
            ["reason"],
            registry=registry,
        )
        self.alerts = Counter(
            "safeguard_risk_alerts_total",
            "Alerts published, by kind (raised, resolved), rule and severity.",
            ["kind", "rule", "severity"],
            registry=registry,
        )
        self.deadline_lag = Histogram(
            "safeguard_risk_deadline_lag_seconds",
            "Time from an obligation's due_at to its alert, for breaches seen in time.",
            registry=registry,
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
        )
        self.processing = Histogram(
            "safeguard_risk_processing_seconds",
            "Time to process one message from the subjects topic.",
            registry=registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1),
        )
