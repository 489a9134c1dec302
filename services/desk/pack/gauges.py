"""The desk's gauges of practice and capacity, recomputed from the database every minute.

Per area, never per person: the caseload gauges say how many offenders and managers an
area has, its largest caseload and how many managers are over the policy's threshold;
no staff id is ever a label. Per rule and area, the share of obligations due in the last
7 days that were met on time, the floor the policy sets, and whether it is below it
(with at least `min-judged` judged). Every desk pod exports the same values (they come
from the one database): alert rules take `max by` over pods.

Why here and not in risk: an offender's events live on its own partition, so no risk
worker sees a manager's whole caseload, and risk's counters have no area; the desk's
database holds every offender's latest assignment and every obligation's outcome.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.desk.pack.policy import Assurance
from services.desk.reports import states
from services.desk.schema import offender_managers, scheduled_sends
from services.desk.timeliness import Query, timeliness

WINDOW = timedelta(days=7)
NO_AREA = "none"


class AssuranceGauges:
    """The gauges, on the desk's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.offenders = Gauge(
            "safeguard_desk_offenders_managed",
            "Offenders with a manager assigned (latest assignment), by area.",
            ["area"],
            registry=registry,
        )
        self.managers = Gauge(
            "safeguard_desk_offender_managers",
            "Offender managers with at least one offender, by area.",
            ["area"],
            registry=registry,
        )
        self.caseload_max = Gauge(
            "safeguard_desk_offender_caseload_max",
            "The largest number of offenders one manager holds, by area.",
            ["area"],
            registry=registry,
        )
        self.caseload_median = Gauge(
            "safeguard_desk_offender_caseload_median",
            "The median number of offenders per manager, by area.",
            ["area"],
            registry=registry,
        )
        self.over_threshold = Gauge(
            "safeguard_desk_offender_managers_over_threshold",
            "Managers holding more offenders than the policy's caseload threshold, by area.",
            ["area"],
            registry=registry,
        )
        self.threshold = Gauge(
            "safeguard_desk_offender_caseload_threshold",
            "The policy's caseload threshold (offenders per manager).",
            registry=registry,
        )
        self.on_time = Gauge(
            "safeguard_desk_on_time_ratio_7d",
            "Share of the obligations due in the last 7 days and judged that were met on "
            "time (backdated ones are not), by rule and area.",
            ["rule", "area"],
            registry=registry,
        )
        self.judged = Gauge(
            "safeguard_desk_judged_7d",
            "Obligations due in the last 7 days and judged (met, overdue or closed by hand).",
            ["rule", "area"],
            registry=registry,
        )
        self.floor = Gauge(
            "safeguard_desk_on_time_floor_ratio",
            "The policy's on-time floor for the rule (0-1).",
            ["rule"],
            registry=registry,
        )
        self.below_floor = Gauge(
            "safeguard_desk_on_time_below_floor",
            "1 when a rule's on-time share over 7 days in an area is below the policy's floor "
            "with at least the policy's minimum judged, else 0.",
            ["rule", "area"],
            registry=registry,
        )
        self.sends_overdue = Gauge(
            "safeguard_desk_scheduled_sends_overdue",
            "Digests and packs due more than 15 minutes ago and not yet sent, by kind.",
            ["kind"],
            registry=registry,
        )
        self.sends_oldest = Gauge(
            "safeguard_desk_scheduled_send_oldest_unsent_seconds",
            "Age of the oldest digest or pack due and not yet sent, by kind (0: none).",
            ["kind"],
            registry=registry,
        )

    async def refresh(self, connection: AsyncConnection, policy: Assurance, now: datetime) -> None:
        """Recompute every gauge from the database."""
        await self._caseloads(connection, policy)
        await self._on_time(connection, policy, now)
        await self._sends(connection, now)

    async def _caseloads(self, connection: AsyncConnection, policy: Assurance) -> None:
        m = offender_managers.c
        rows = await connection.execute(
            select(m.area, m.manager_id, func.count()).group_by(m.area, m.manager_id)
        )
        loads: dict[str, list[int]] = defaultdict(list)
        for area, _manager, n in rows:
            loads[area].append(int(n))
        threshold = policy.caseload_threshold
        self.threshold.set(threshold)
        for gauge in (
            self.offenders,
            self.managers,
            self.caseload_max,
            self.caseload_median,
            self.over_threshold,
        ):
            gauge.clear()
        for area, counts in loads.items():
            self.offenders.labels(area=area).set(sum(counts))
            self.managers.labels(area=area).set(len(counts))
            self.caseload_max.labels(area=area).set(max(counts))
            self.caseload_median.labels(area=area).set(statistics.median(counts))
            self.over_threshold.labels(area=area).set(sum(1 for n in counts if n > threshold))

    async def _on_time(self, connection: AsyncConnection, policy: Assurance, now: datetime) -> None:
        from services.common.auth import Principal  # noqa: PLC0415 - a reader of every area

        everyone = Principal(name="desk", sources=(), roles=frozenset())
        query = Query(start=now - WINDOW, end=now, over=timedelta(days=25))
        report = timeliness(await states(connection, query, everyone), query, now)
        for gauge in (self.on_time, self.judged, self.below_floor, self.floor):
            gauge.clear()
        for (rule, area), figures in report.rows.items():
            labels = {"rule": rule, "area": area or NO_AREA}
            floor = policy.floor(rule) / 100
            self.floor.labels(rule=rule).set(floor)
            self.judged.labels(**labels).set(figures.due)
            if not figures.due:
                continue
            ratio = figures.met_on_time / figures.due
            self.on_time.labels(**labels).set(ratio)
            below = figures.due >= policy.min_judged and ratio < floor
            self.below_floor.labels(**labels).set(1 if below else 0)

    async def _sends(self, connection: AsyncConnection, now: datetime) -> None:
        s = scheduled_sends.c
        rows = await connection.execute(
            select(s.kind, func.count(), func.min(s.due_at))
            .where(s.status != "sent", s.due_at < now - timedelta(minutes=15))
            .group_by(s.kind)
        )
        found = {kind: (int(n), oldest) for kind, n, oldest in rows}
        for kind in ("digest", "pack"):
            n, oldest = found.get(kind, (0, None))
            self.sends_overdue.labels(kind=kind).set(n)
            self.sends_oldest.labels(kind=kind).set(
                (now - oldest).total_seconds() if oldest is not None else 0
            )
