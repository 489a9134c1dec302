"""The desk's composition root: `create_app(settings)` wires everything, once.

No module-level app exists outside the entry point (services/desk/main.py). With
`DESK_SERVE=false` the process serves its probes and metrics only (a projector-only
deployment); with `DESK_PROJECTOR__ENABLED=false` it serves pages without projecting.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry

from services.common.auth import Authenticator
from services.common.clock import Clock, SystemClock
from services.common.metrics import CONTENT_TYPE_LATEST, exposition
from services.desk import queries, reports
from services.desk.actions import Actions
from services.desk.audit import Auditor
from services.desk.background import Job, forever
from services.desk.broker import Publisher
from services.desk.database import Database
from services.desk.errors import DatabaseUnavailable
from services.desk.identity import OidcIdentity
from services.desk.metrics import DeskMetrics
from services.desk.pack.gauges import AssuranceGauges
from services.desk.pack.policy import AssurancePolicy
from services.desk.pack.schedule import Scheduler
from services.desk.pack.service import PackMaker
from services.desk.policy import DeskPolicy
from services.desk.projector import Projector
from services.desk.records import Kind, topic_kinds
from services.desk.sessions import AttemptStore, Lifetimes, SessionStore, TokenIdentity
from services.desk.settings import DeskSettings
from services.desk.throttle import Throttle
from services.desk.web import (
    BODY_TIMEOUT_KEY,
    FORWARDED_HOPS_KEY,
    METRICS_KEY,
    REFUSALS_KEY,
    body_middleware,
    errors_middleware,
    headers_middleware,
    json_response,
    metrics_middleware,
)

log = structlog.get_logger(__name__)


@dataclass
class Desk:
    """Everything the pages need, built once from the settings."""

    settings: DeskSettings
    auth: Authenticator
    clock: Clock
    database: Database
    publisher: Publisher
    auditor: Auditor
    actions: Actions
    sessions: SessionStore
    tokens: TokenIdentity | None  # sign-in with a token: development only
    oidc: OidcIdentity | None  # people's sign-in
    attempts: AttemptStore
    throttle: Throttle
    metrics: DeskMetrics
    registry: CollectorRegistry
    kinds: dict[str, Kind]
    policy: DeskPolicy
    assurance: AssurancePolicy
    projector: Projector | None = None
    jobs: list[Job] = field(default_factory=list)
    packs: PackMaker = field(init=False)
    gauges: AssuranceGauges = field(init=False)

    def __post_init__(self) -> None:
        self.packs = PackMaker(self, self.assurance)
        self.gauges = AssuranceGauges(self.registry)

    async def caught_up_at(self) -> datetime | None:
        """Return when the projection was last known to have read every topic to its end."""
        async with self.database.read() as connection:
            return await queries.caught_up_at(connection, list(self.kinds))

    async def staleness(self) -> str | None:
        """Say how far behind the projection is, when more than the console's threshold."""
        try:
            caught = await self.caught_up_at()
        except DatabaseUnavailable:
            return None  # the page itself will say the database is away
        if caught is None:
            return (
                "The desk has not yet read every topic to its end: what is shown may be incomplete."
            )
        behind = (self.clock.now() - caught).total_seconds()
        if behind > self.settings.console.stale_after_seconds:
            return (
                f"The data shown may be {int(behind)} s old: the projection is behind the broker."
            )
        return None

    async def refresh_gauges(self) -> None:
        """Recompute the caseload, on-time and scheduled-send gauges."""
        async with self.database.read() as connection:
            await self.gauges.refresh(connection, self.assurance.assurance, self.clock.now())

    async def prune_reports(self) -> None:
        """Forget the finished obligations past the report's retention."""
        horizon = self.clock.now() - timedelta(days=self.settings.reports.retention_days)
        async with self.database.write() as connection:
            pruned = await reports.prune(connection, horizon)
        if pruned:
            self.metrics.pruned.inc(pruned)
            log.info("report_pruned", obligations=pruned)


DESK_KEY = web.AppKey("desk", Desk)


def build(
    settings: DeskSettings, *, registry: CollectorRegistry | None = None, clock: Clock | None = None
) -> Desk:
    """Build the desk's parts (nothing connects yet)."""
    registry = registry if registry is not None else CollectorRegistry()
    clock = clock or SystemClock()
    auth = settings.authenticator()
    metrics = DeskMetrics(registry)
    database = Database(settings.database_url.get_secret_value(), settings.db)
    publisher = Publisher(settings.kafka, timeout=settings.publish_timeout_seconds)
    auditor = Auditor(publisher, settings.audit_topic, clock)
    kinds = topic_kinds(settings.kafka.topics, settings.audit_topic)
    console = settings.console
    desk = Desk(
        settings=settings,
        auth=auth,
        clock=clock,
        database=database,
        publisher=publisher,
        auditor=auditor,
        actions=Actions(
            database, publisher, auditor, clock, settings.kafka.topics.commands, metrics
        ),
        sessions=SessionStore(
            database,
            clock,
            Lifetimes(
                idle=timedelta(seconds=console.session_idle_seconds),
                max_age=timedelta(seconds=console.session_max_seconds),
                per_principal=console.sessions_per_principal,
            ),
            metrics,
        ),
        tokens=TokenIdentity(auth) if settings.tokens_sign_in else None,
        oidc=OidcIdentity(settings.oidc, clock) if settings.oidc is not None else None,
        attempts=AttemptStore(
            database,
            clock,
            timedelta(seconds=settings.oidc.attempt_seconds if settings.oidc else 600),
        ),
        throttle=Throttle(database, clock, settings.sign_in),
        metrics=metrics,
        registry=registry,
        kinds=kinds,
        policy=DeskPolicy.load(settings.policy_file),
        assurance=AssurancePolicy.load(settings.policy_file),
        projector=Projector(
            settings,
            Database(settings.database_url.get_secret_value(), settings.db, pooled=False),
            metrics,
            clock,
            kinds,
            publisher=publisher,
        )
        if settings.projector.enabled
        else None,
    )
    desk.jobs.append(
        Job("report_retention", settings.reports.prune_interval_seconds, desk.prune_reports)
    )
    schedule = settings.schedule
    desk.jobs.append(Job("assurance_gauges", schedule.gauges_interval_seconds, desk.refresh_gauges))
    if schedule.enabled and settings.policy_file is not None:
        settings.smtp.check("DESK_")
        desk.jobs.append(Job("scheduled_sends", schedule.interval_seconds, Scheduler(desk).tick))
    return desk


def create_app(
    settings: DeskSettings, *, registry: CollectorRegistry | None = None, clock: Clock | None = None
) -> web.Application:
    """Return the desk's aiohttp application, its projector started with it."""
    from services.desk import api, console, openapi, signin  # noqa: PLC0415 - they need Desk
    from services.desk.pack import api as pack_api  # noqa: PLC0415
    from services.desk.pack import console as pack_console  # noqa: PLC0415

    desk = build(settings, registry=registry, clock=clock)
    app = web.Application(
        middlewares=[metrics_middleware, headers_middleware, errors_middleware, body_middleware],
        client_max_size=settings.max_body_bytes,
    )
    app[DESK_KEY] = desk
    app[METRICS_KEY] = desk.metrics
    app[REFUSALS_KEY] = desk.auditor.refused
    app[BODY_TIMEOUT_KEY] = settings.body_timeout_seconds
    app[FORWARDED_HOPS_KEY] = settings.sign_in.forwarded_for_hops
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_page)
    if settings.serve:
        app.router.add_get("/openapi.json", openapi.page)
        api.add_routes(app)
        console.add_routes(app)
        signin.add_routes(app)
        pack_api.add_routes(app)
        pack_console.add_routes(app)
    app.on_startup.append(_start)
    app.on_cleanup.append(_stop)
    return app


PROJECTOR_TASK = web.AppKey("projector_task", asyncio.Task[None])
JOB_TASKS = web.AppKey("job_tasks", list[asyncio.Task[None]])


async def _start(app: web.Application) -> None:
    desk = app[DESK_KEY]
    if desk.projector is not None:
        app[PROJECTOR_TASK] = asyncio.create_task(desk.projector.run(), name="projector")
    app[JOB_TASKS] = [
        asyncio.create_task(forever(job, desk.metrics), name=job.name) for job in desk.jobs
    ]


async def _stop(app: web.Application) -> None:
    desk = app[DESK_KEY]
    tasks = [*app.get(JOB_TASKS, []), *([app[PROJECTOR_TASK]] if PROJECTOR_TASK in app else [])]
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await desk.publisher.close()
    await desk.database.close()
    if desk.oidc is not None:
        await desk.oidc.close()
    if desk.projector is not None:
        await desk.projector.database.close()


async def healthz(_request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the database answers and its schema is this code's (else 503, and why)."""
    desk = request.app[DESK_KEY]
    try:
        state = await desk.database.schema()
    except DatabaseUnavailable:
        return json_response(
            {"status": "unavailable", "reason": "the database does not answer"},
            503,
            {"Retry-After": "5"},
        )
    if state.problem is not None:
        return json_response(
            {"status": "unavailable", "reason": state.problem}, 503, {"Retry-After": "5"}
        )
    body: dict[str, object] = {"status": "ready", "schema": state.current}
    if desk.projector is not None:
        body["projector"] = "running" if desk.projector.running else "starting"
    return json_response(body)


async def metrics_page(request: web.Request) -> web.Response:
    """Prometheus exposition."""
    desk = request.app[DESK_KEY]
    content_type = CONTENT_TYPE_LATEST.split("; charset")[0]
    return web.Response(body=exposition(desk.registry), content_type=content_type)
