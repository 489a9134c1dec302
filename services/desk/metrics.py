"""The desk's metrics (`safeguard_desk_*`): bounded labels only, never an id.

`route` is the route's template (`/v1/alerts/{alert_id}`), `topic` the kind of topic
(`alert_views`, `outcomes`, ...), `reason` a code.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class DeskMetrics:
    """Metrics registered on a registry passed in, so tests get a fresh one."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "safeguard_desk_http_requests_total",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "safeguard_desk_http_request_duration_seconds",
            "Time to answer a request, by route template.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.records = Counter(
            "safeguard_desk_projector_records_total",
            "Records the projector applied (committed with their offsets), by topic.",
            ["topic"],
            registry=registry,
        )
        self.skipped = Counter(
            "safeguard_desk_projector_skipped_total",
            "Records that changed nothing (tombstones, invalid records), by topic and reason.",
            ["topic", "reason"],
            registry=registry,
        )
        self.lag = Gauge(
            "safeguard_desk_projector_lag_records",
            "Records on the broker not yet projected, in this projector's partitions, by topic.",
            ["topic"],
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "safeguard_desk_projector_batch_seconds",
            "Time to write one batch and its offsets.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.retries = Counter(
            "safeguard_desk_projector_retries_total",
            "Batches or partition assignments retried after a transient failure, by cause.",
            ["cause"],
            registry=registry,
        )
        self.commands = Counter(
            "safeguard_desk_commands_total",
            "Acknowledgements and resolutions published, by action.",
            ["action"],
            registry=registry,
        )
        self.unavailable = Counter(
            "safeguard_desk_unavailable_total",
            "Requests answered 503, by what did not answer (database, broker).",
            ["dependency"],
            registry=registry,
        )
        self.sessions_started = Counter(
            "safeguard_desk_sessions_started_total",
            "Console sign-ins.",
            registry=registry,
        )
        self.sessions_evicted = Counter(
            "safeguard_desk_sessions_evicted_total",
            "Sessions ended because their principal opened more than the cap allows.",
            registry=registry,
        )
        self.background_failures = Counter(
            "safeguard_desk_background_failures_total",
            "Periodic jobs (retention, gauges, scheduled sends) that failed, by job.",
            ["job"],
            registry=registry,
        )
        self.pruned = Counter(
            "safeguard_desk_report_pruned_total",
            "Finished obligations the timeliness report forgot after its retention.",
            registry=registry,
        )
        self.scheduled = Counter(
            "safeguard_desk_scheduled_sends_total",
            "Attempts to send a weekly digest or a monthly pack, by kind and outcome "
            "(sent, failed: retried until sent).",
            ["kind", "outcome"],
            registry=registry,
        )
