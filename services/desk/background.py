"""The desk's periodic jobs: each runs in every pod, on its own interval, and never dies.

Every job is safe to run in several pods at once: the report's retention is an
idempotent DELETE, the gauges are recomputed from the database, and the scheduled sends
take each due row under a lease (services.desk.pack.schedule). A job that fails is
counted (`safeguard_desk_background_failures_total{job}`) and logged by its error's
type, and tried again at its next interval.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from services.desk.metrics import DeskMetrics

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Job:
    """One periodic job: its name (a metric label), its interval, what it does."""

    name: str
    interval_seconds: float
    run: Callable[[], Awaitable[None]]


async def forever(job: Job, metrics: DeskMetrics) -> None:
    """Run `job` every interval until cancelled; a failure waits for the next interval."""
    while True:
        try:
            await job.run()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - a periodic job must outlive any fault
            metrics.background_failures.labels(job=job.name).inc()
            log.warning("background_job_failed", job=job.name, error=type(error).__name__)
        await asyncio.sleep(job.interval_seconds)
