"""The risk service's metrics (names `safeguard_risk_*`, labels bounded)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from services.common.clock import Clock
from services.risk.calendar import DEFAULT_AREA, SchoolCalendar


class RiskMetrics:
    """Metrics registered on a registry passed in, so tests get a fresh one."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "safeguard_risk_events_processed_total",
            "Events applied to subject state, by type (once per subject they concern).",
            ["type"],
            registry=registry,
        )
        self.duplicates = Counter(
            "safeguard_risk_duplicates_dropped_total",
            "Events dropped because their (source, id) was already processed.",
            registry=registry,
        )
        self.closed = Counter(
            "safeguard_risk_obligations_closed_total",
            "Obligations met or breached, by rule and outcome (met_on_time, met_late, breached); "
            "a breach later fulfilled counts once as breached and once as met.",
            ["rule", "outcome"],
            registry=registry,
        )
        self.lateness = Histogram(
            "safeguard_risk_obligation_lateness_seconds",
            "How late obligations met after their deadline were met, by rule.",
            ["rule"],
            registry=registry,
            buckets=(
                3600,
                6 * 3600,
                86400,
                3 * 86400,
                7 * 86400,
                14 * 86400,
                25 * 86400,
                60 * 86400,
            ),
        )
        self.capped = Counter(
            "safeguard_risk_state_capped_total",
            "Entries dropped from a subject's history because a collection was over its cap.",
            ["collection"],
            registry=registry,
        )
        self.open_obligations = Gauge(
            "safeguard_risk_open_obligations",
            "Obligations whose deadline is still being watched, by rule and area "
            "(area=none: without one; this worker).",
            ["rule", "area"],
            registry=registry,
        )
        self.overdue = Gauge(
            "safeguard_risk_overdue_obligations",
            "Obligations past their deadline with nothing to meet them yet (alert raised, "
            "not resolved), by rule and area (this worker): the backlog a unit carries.",
            ["rule", "area"],
            registry=registry,
        )
        self.breaches = Counter(
            "safeguard_risk_breaches_total",
            "Alerts raised, by rule and severity.",
            ["rule", "severity"],
            registry=registry,
        )
        self.resolutions = Counter(
            "safeguard_risk_resolutions_total",
            "Alerts resolved by a late fulfilment, by rule.",
            ["rule"],
            registry=registry,
        )
        self.deadline_lag = Histogram(
            "safeguard_risk_deadline_lag_seconds",
            "Alert time minus due_at, for deadlines that passed while being watched.",
            registry=registry,
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
        )


class SchoolCalendarKnown(Collector):
    """How many days ahead each area's school terms are known, read at every scrape.

    `area` is `default` for the terms of areas without their own. Past that day every
    working day counts as a school day (docs/contract.md section 3): the alert rule
    fires under 60 days so the terms are added before it happens.
    """

    NAME = "safeguard_risk_school_calendar_known_days"

    def __init__(self, calendar: SchoolCalendar, clock: Clock) -> None:
        self.calendar = calendar
        self.clock = clock

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """Describe the gauge without reading the clock."""
        yield GaugeMetricFamily(self.NAME, self._help(), labels=["area"])

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Yield the days from today to the last term day known, per area (negative: past)."""
        family = GaugeMetricFamily(self.NAME, self._help(), labels=["area"])
        today = self.clock.now().date()
        areas = self.calendar.areas() or [DEFAULT_AREA]
        for area in areas:
            known = self.calendar.known_until(area)
            family.add_metric([area], float((known - today).days) if known else 0.0)
        yield family

    @staticmethod
    def _help() -> str:
        return (
            "Days from today to the last school day each area's terms list (area=default: "
            "areas without their own); past it every working day counts as a school day."
        )


def register_calendar(registry: CollectorRegistry, calendar: SchoolCalendar, clock: Clock) -> None:
    """Export how far ahead the school calendar is known, on `registry`."""
    registry.register(SchoolCalendarKnown(calendar, clock))
