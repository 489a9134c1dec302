"""HTTP surface of the ingest service (CONTRACT.md section 6).

Order of checks: authenticate, check the media type and size, parse, validate, check the
token may send for each event's source, write, answer. Nothing is written unless every
event in the request passed every check, and nothing is answered 202 before the broker
acknowledged the write.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry

from schemas.errors import FieldError, InvalidEvent, MalformedJSON
from schemas.events import Event, parse_event
from services.common.auth import Authenticator, Principal
from services.common.clock import Clock
from services.common.metrics import CONTENT_TYPE_LATEST, exposition
from services.ingest.errors import (
    BodyTooLarge,
    Forbidden,
    IngestError,
    InvalidEvents,
    MalformedBody,
    Unauthenticated,
    UnsupportedMediaType,
)
from services.ingest.keys import partition_key
from services.ingest.metrics import IngestMetrics
from services.ingest.producer import EventWriter
from services.ingest.settings import IngestSettings

log = structlog.get_logger(__name__)

STRUCTURED_TYPES = frozenset({"application/cloudevents+json", "application/json"})
BATCH_TYPE = "application/cloudevents-batch+json"
MAX_BATCH = 500
# CloudEvents HTTP binding: attributes travel as ce-* headers, data is the body.
BINARY_ATTRIBUTES = ("specversion", "id", "source", "type", "time", "subject", "dataschema")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class IngestApp:
    """Request handlers bound to their collaborators."""

    def __init__(
        self,
        settings: IngestSettings,
        writer: EventWriter,
        auth: Authenticator,
        clock: Clock,
        registry: CollectorRegistry,
    ) -> None:
        self.settings = settings
        self.writer = writer
        self.auth = auth
        self.clock = clock
        self.registry = registry
        self.metrics = IngestMetrics(registry)

    def _principal(self, request: web.Request) -> Principal:
        principal = self.auth.authenticate(request.headers.get("Authorization"))
        if principal is None:
            raise Unauthenticated("a valid bearer token is required")
        return principal

    async def _body(self, request: web.Request) -> bytes:
        limit = self.settings.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise BodyTooLarge(f"body is over the {limit} byte limit")
        body = await request.content.read(limit + 1)
        if len(body) > limit:
            raise BodyTooLarge(f"body is over the {limit} byte limit")
        return body

    @staticmethod
    def _json(body: bytes) -> object:
        try:
            return json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MalformedBody(f"body is not valid JSON: {exc}") from exc

    def _validate(self, raw: object, prefix: str = "") -> Event:
        try:
            return parse_event(raw, now=self.clock.now())
        except MalformedJSON as exc:
            raise MalformedBody(str(exc)) from exc
        except InvalidEvent as exc:
            errors = [FieldError(loc=f"{prefix}{e.loc}", msg=e.msg) for e in exc.errors]
            raise InvalidEvents("event does not match the contract", errors) from exc

    def _authorise(self, principal: Principal, events: list[Event]) -> None:
        for event in events:
            if not principal.may_send_for(event.source):
                raise Forbidden(f"token may not send for source {event.source!r}")

    async def _accept(self, principal: Principal, events: list[Event]) -> web.Response:
        self._authorise(principal, events)
        records = [
            (partition_key(e).encode(), e.model_dump_json(exclude_none=True).encode())
            for e in events
        ]
        started = time.perf_counter()
        await self.writer.write(self.settings.kafka.topics.events, records)
        self.metrics.produce_latency.observe(time.perf_counter() - started)
        for event in events:
            self.metrics.accepted.labels(type=event.type).inc()
            log.info("event_accepted", event_id=event.id, type=event.type, caller=principal.name)
        accepted = [{"id": e.id, "source": e.source} for e in events]
        body = accepted[0] if len(accepted) == 1 else {"accepted": accepted}
        return web.json_response(body, status=202)

    async def post_event(self, request: web.Request) -> web.Response:
        """`POST /v1/events`: one event, structured or binary mode."""
        principal = self._principal(request)
        media_type = request.content_type
        if "ce-specversion" in request.headers:
            if media_type != "application/json":
                raise UnsupportedMediaType(
                    f"binary mode needs Content-Type application/json, got {media_type!r}"
                )
            data = self._json(await self._body(request))
            raw: dict[str, Any] = {
                name: request.headers[f"ce-{name}"]
                for name in BINARY_ATTRIBUTES
                if f"ce-{name}" in request.headers
            }
            raw["datacontenttype"] = "application/json"
            raw["data"] = data
        elif media_type in STRUCTURED_TYPES:
            raw = self._json(await self._body(request))  # type: ignore[assignment]
        else:
            raise UnsupportedMediaType(
                f"expected one of {sorted(STRUCTURED_TYPES)} or binary mode (ce-* headers), "
                f"got {media_type!r}"
            )
        return await self._accept(principal, [self._validate(raw)])

    async def post_batch(self, request: web.Request) -> web.Response:
        """`POST /v1/events/batch`: up to 500 events, all written or none."""
        principal = self._principal(request)
        if request.content_type != BATCH_TYPE:
            raise UnsupportedMediaType(f"expected {BATCH_TYPE}, got {request.content_type!r}")
        raw = self._json(await self._body(request))
        if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_BATCH:
            raise InvalidEvents(
                f"a batch is a JSON array of 1 to {MAX_BATCH} events",
                [FieldError(loc="", msg=f"expected an array of 1 to {MAX_BATCH} events")],
            )
        events: list[Event] = []
        errors: list[FieldError] = []
        for index, item in enumerate(raw):
            try:
                events.append(self._validate(item, prefix=f"[{index}]."))
            except InvalidEvents as exc:
                errors.extend(exc.errors)
        if errors:
            raise InvalidEvents("some events do not match the contract; none was written", errors)
        return await self._accept(principal, events)

    async def healthz(self, _request: web.Request) -> web.Response:
        """Liveness: the process answers."""
        return web.json_response({"status": "ok"})

    async def readyz(self, _request: web.Request) -> web.Response:
        """Readiness: the broker answers with metadata for the events topic."""
        if await self.writer.ready(self.settings.kafka.topics.events):
            return web.json_response({"status": "ready"})
        return web.json_response(
            {"status": "broker unreachable"},
            status=503,
            headers={"Retry-After": str(self.settings.retry_after_seconds)},
        )

    async def metrics_view(self, _request: web.Request) -> web.Response:
        """Prometheus exposition."""
        return web.Response(
            body=exposition(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    @web.middleware
    async def errors_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Map IngestError to its status and JSON body; count every request."""
        route = (
            request.match_info.route.resource.canonical
            if request.match_info.route.resource
            else "unmatched"
        )
        self.metrics.in_flight.inc()
        try:
            response = await handler(request)
        except IngestError as exc:
            self.metrics.rejected.labels(reason=exc.code).inc()
            response = self._error_response(exc)
        except web.HTTPRequestEntityTooLarge:
            too_large = BodyTooLarge(f"body is over the {self.settings.max_body_bytes} byte limit")
            self.metrics.rejected.labels(reason=too_large.code).inc()
            response = self._error_response(too_large)
        except web.HTTPException as exc:
            response = web.json_response(
                {"error": exc.reason.lower().replace(" ", "_"), "message": exc.reason},
                status=exc.status,
            )
        finally:
            self.metrics.in_flight.dec()
        self.metrics.requests.labels(route=route, status=str(response.status)).inc()
        return response

    def _error_response(self, exc: IngestError) -> web.Response:
        headers: dict[str, str] = {}
        if exc.status == 401:  # noqa: PLR2004
            headers["WWW-Authenticate"] = 'Bearer realm="safeguard"'
        if exc.status == 503:  # noqa: PLR2004
            headers["Retry-After"] = str(self.settings.retry_after_seconds)
        body: dict[str, Any] = {"error": exc.code, "message": exc.message}
        if exc.errors:
            body["errors"] = [{"loc": e.loc, "msg": e.msg} for e in exc.errors]
        log.info("request_refused", status=exc.status, reason=exc.code)
        return web.json_response(body, status=exc.status, headers=headers)


def create_app(
    settings: IngestSettings,
    writer: EventWriter,
    auth: Authenticator,
    clock: Clock,
    registry: CollectorRegistry,
) -> web.Application:
    """Wire the ingest HTTP application."""
    handlers = IngestApp(settings, writer, auth, clock, registry)
    app = web.Application(
        middlewares=[handlers.errors_middleware],
        # aiohttp's own limit sits above ours so our check produces the JSON 413.
        client_max_size=settings.max_body_bytes + 1024,
    )
    app.router.add_post("/v1/events", handlers.post_event)
    app.router.add_post("/v1/events/batch", handlers.post_batch)
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get("/readyz", handlers.readyz)
    app.router.add_get("/metrics", handlers.metrics_view)
    return app
