"""The ingest service's metrics (names `safeguard_ingest_*`, labels bounded)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class IngestMetrics:
    """Metrics registered on a registry passed in, so tests get a fresh one."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "safeguard_ingest_requests_total",
            "HTTP requests by route and status code.",
            ["route", "status"],
            registry=registry,
        )
        self.accepted = Counter(
            "safeguard_ingest_events_accepted_total",
            "Events acknowledged by the broker, by type.",
            ["type"],
            registry=registry,
        )
        self.rejected = Counter(
            "safeguard_ingest_requests_rejected_total",
            "Requests refused, by reason (the error code in the response body).",
            ["reason"],
            registry=registry,
        )
        self.produce_latency = Histogram(
            "safeguard_ingest_produce_latency_seconds",
            "Time from handing events to the producer until the broker acknowledged them.",
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.in_flight = Gauge(
            "safeguard_ingest_requests_in_flight",
            "Requests being handled.",
            registry=registry,
        )
        self.write_failures = Counter(
            "safeguard_ingest_write_failures_total",
            "Writes the broker did not acknowledge (answered 503), by cause: timeout,"
            " broker_error (an error the broker reported) or unreachable (no producer).",
            ["error"],
            registry=registry,
        )
        self.producer_replacements = Counter(
            "safeguard_ingest_producer_replacements_total",
            "Kafka producers retired and replaced, by reason: timeouts, stale_send,"
            " broker_error or readiness.",
            ["reason"],
            registry=registry,
        )
        self.writes_failing = Gauge(
            "safeguard_ingest_writes_failing",
            "1 while the last write failed and none has succeeded since, else 0.",
            registry=registry,
        )
