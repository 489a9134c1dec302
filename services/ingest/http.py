"""HTTP surface of the ingest service (docs/contract.md section 6).

Order of checks: authenticate (401), media type (415), size (413), a body read within its
time (408), parse (400), validate (422), the token may send every event's type for its
source (403), write one audit record per event and then the events (503 if either
fails), answer 202. Nothing is written unless every event in the request passed every
check; no event is written before the broker acknowledged the record of who sent it,
and nothing is answered 202 before it acknowledged the events too (acks=all). A refusal
(401, 403) is logged and audited with the token's name, or the caller's address.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from schemas.errors import ROOT_LOC
from schemas.events import Event
from services.common.audit import accepted_events, client_actor, refused_request
from services.common.auth import Authenticator, Principal, Role
from services.common.clock import Clock
from services.common.metrics import CONTENT_TYPE_LATEST, exposition
from services.ingest import decoding
from services.ingest.errors import (
    BodyTooLarge,
    BrokerUnavailable,
    Forbidden,
    IngestError,
    RequestTimeout,
    Unauthenticated,
)
from services.ingest.keys import partition_key
from services.ingest.metrics import IngestMetrics
from services.ingest.models import Accepted, BatchAccepted, ErrorBody, ErrorDetail, Status
from services.ingest.openapi import document
from services.ingest.producer import EventWriter
from services.ingest.settings import IngestSettings

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Header values arrive decoded with surrogate escapes; a token can only be printable ASCII.
_PRINTABLE_ASCII = re.compile(r"^[\x20-\x7e]*$")
_READ_CHUNK = 64 * 1024
_PRINCIPAL = web.RequestKey("principal", Principal)


def _json(model: BaseModel, status: int, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=model.model_dump_json(exclude_none=True),
        status=status,
        content_type="application/json",
        headers=headers,
    )


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
        writer.report_to(self.metrics)
        self.openapi = document()
        self._background: set[asyncio.Task[None]] = set()

    # --- the checks, in order ------------------------------------------------------------

    def _principal(self, request: web.Request) -> Principal:
        header = request.headers.get("Authorization")
        principal = (
            self.auth.authenticate(header)
            if header is not None and _PRINTABLE_ASCII.match(header)
            else None
        )
        if principal is None:
            raise Unauthenticated("a valid bearer token is required")
        request[_PRINCIPAL] = principal
        return principal

    async def _body(self, request: web.Request) -> bytes:
        limit = self.settings.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise BodyTooLarge(f"body is over the {limit} byte limit")
        # Read to the end ourselves: one read() returns whatever has arrived so far, and
        # a chunked body has no Content-Length to check up front.
        # A body sent a trickle at a time would hold the request for as long as its sender
        # likes.
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.settings.body_timeout_seconds):
                while chunk := await request.content.read(_READ_CHUNK):
                    size += len(chunk)
                    if size > limit:
                        raise BodyTooLarge(f"body is over the {limit} byte limit")
                    chunks.append(chunk)
        except TimeoutError:
            raise RequestTimeout(
                f"the body did not arrive within {self.settings.body_timeout_seconds:g} s"
            ) from None
        return b"".join(chunks)

    @staticmethod
    def _authorise(principal: Principal, events: list[Event], *, batch: bool) -> None:
        if not principal.has(Role.SEND):
            raise Forbidden(
                "the token lacks the 'send' role",
                [ErrorDetail(loc=ROOT_LOC, msg="this token may not send events")],
            )
        errors: list[ErrorDetail] = []
        refused: set[str] = set()
        for index, event in enumerate(events):
            prefix = f"[{index}]." if batch else ""
            position = index if batch else None
            if not principal.may_send_for(event.source):
                refused.add("source")
                # The source is not repeated: it is the sender's text (it could be anything
                # its pattern allows); the location names it.
                errors.append(
                    ErrorDetail(
                        loc=f"{prefix}source",
                        msg="this token may not send for this source",
                        index=position,
                    )
                )
            if not principal.may_send_type(event.type):
                refused.add("type")
                # The type is one of the contract's names, so it is safe to repeat.
                errors.append(
                    ErrorDetail(
                        loc=f"{prefix}type",
                        msg=f"this token may not send events of type {event.type}",
                        index=position,
                    )
                )
        if errors:
            what = " or ".join(
                {"source": "for this source", "type": "events of this type"}[k]
                for k in sorted(refused)
            )
            every = "some events: " if batch else ""
            raise Forbidden(f"the token may not send {every}{what}", errors)

    async def _write(self, principal: Principal, events: list[Event]) -> None:
        records = [(partition_key(e).encode(), e.to_json()) for e in events]
        audit = accepted_events(principal, events, self.clock.now())
        started = time.perf_counter()
        # The record of who sent them first, then the events: an event is never written,
        # let alone processed, without it. A failure of either is a 503, and the retry's
        # duplicates are dropped downstream by (source, id).
        for topic, batch in (
            (self.settings.audit_topic, audit),
            (self.settings.kafka.topics.events, records),
        ):
            try:
                await self.writer.write(topic, batch)
            except BrokerUnavailable:
                raise
            except Exception as exc:
                log.warning("write_refused", error=type(exc).__name__, records=len(batch))
                raise BrokerUnavailable(
                    f"the broker did not take the write ({type(exc).__name__}); retry later"
                ) from exc
        self.metrics.produce_latency.observe(time.perf_counter() - started)
        # One labelled increment per type, not per event: a batch is mostly of few types.
        for kind, count in Counter(e.type for e in events).items():
            self.metrics.accepted.labels(type=kind).inc(count)
        # Event ids are the sender's references, not personal data; the caller is named by
        # its configured label, never by its token.
        log.info(
            "events_accepted",
            caller=principal.name,
            count=len(events),
            event_ids=[e.id for e in events],
        )

    # --- routes --------------------------------------------------------------------------

    async def post_event(self, request: web.Request) -> web.Response:
        """`POST /v1/events`: one event, structured or binary mode."""
        principal = self._principal(request)
        content_type = request.headers.get("Content-Type")
        now = self.clock.now()
        if decoding.is_binary_mode(content_type, request.headers.keys()):
            decoding.require_media_type(content_type, {decoding.JSON})
            body = await self._body(request)
            attributes = decoding.binary_attributes(request.headers.items())
            event = decoding.parse_binary(attributes, body, now=now)
        else:
            decoding.require_media_type(content_type, decoding.STRUCTURED_TYPES)
            event = decoding.parse_structured(await self._body(request), now=now)
        self._authorise(principal, [event], batch=False)
        await self._write(principal, [event])
        return _json(Accepted(id=event.id, source=event.source), 202)

    async def post_batch(self, request: web.Request) -> web.Response:
        """`POST /v1/events/batch`: up to 500 events, all written or none refused."""
        principal = self._principal(request)
        decoding.require_media_type(
            request.headers.get("Content-Type"), {decoding.CLOUDEVENTS_BATCH}
        )
        events = decoding.parse_batch(await self._body(request), now=self.clock.now())
        self._authorise(principal, events, batch=True)
        await self._write(principal, events)
        return _json(BatchAccepted(accepted=len(events)), 202)

    async def healthz(self, _request: web.Request) -> web.Response:
        """Liveness: the process answers."""
        return _json(Status(status="ok"), 200)

    async def readyz(self, _request: web.Request) -> web.Response:
        """Readiness: the broker answers in time, and writes are not failing.

        Writes that failed stop counting once the producer they failed on was replaced
        by one that connected (services/ingest/producer.py).
        """
        if await self.writer.ready(self.settings.kafka.topics.events):
            return _json(Status(status="ready"), 200)
        return _json(
            Status(status="broker unreachable"),
            503,
            headers={"Retry-After": str(self.settings.retry_after_seconds)},
        )

    async def metrics_view(self, _request: web.Request) -> web.Response:
        """Prometheus exposition."""
        return web.Response(
            body=exposition(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def openapi_view(self, _request: web.Request) -> web.Response:
        """Serve the OpenAPI description of this service."""
        return web.json_response(self.openapi)

    # --- errors and accounting -----------------------------------------------------------

    @web.middleware
    async def errors_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Map every failure to a JSON body and its status; count every request."""
        resource = request.match_info.route.resource
        # Bounded label: the route template, never the path a caller typed.
        route = resource.canonical if resource is not None else "unmatched"
        self.metrics.in_flight.inc()
        try:
            response = await handler(request)
        except IngestError as exc:
            self.metrics.rejected.labels(reason=exc.code).inc()
            response = self._error_response(exc)
            if isinstance(exc, Unauthenticated | Forbidden):
                self._audit_refusal(request, exc, route)
        except web.HTTPException as exc:
            headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            code = exc.reason.lower().replace(" ", "_")
            response = _json(ErrorBody(error=code, message=exc.reason), exc.status, headers)
        except Exception as exc:
            # Exceptions can quote input (personal data): log the type and the stack only.
            log.exception("request_failed", route=route, error=type(exc).__name__)
            response = _json(ErrorBody(error="internal_error", message="internal error"), 500)
        finally:
            self.metrics.in_flight.dec()
        self.metrics.requests.labels(route=route, status=str(response.status)).inc()
        return response

    def _error_response(self, exc: IngestError) -> web.Response:
        headers: dict[str, str] = {}
        if isinstance(exc, Unauthenticated):
            headers["WWW-Authenticate"] = 'Bearer realm="safeguard"'
        if exc.status == web.HTTPServiceUnavailable.status_code:
            headers["Retry-After"] = str(self.settings.retry_after_seconds)
        log.info("request_refused", status=exc.status, reason=exc.code, problems=len(exc.errors))
        body = ErrorBody(error=exc.code, message=exc.message, errors=exc.errors)
        return _json(body, exc.status, headers)

    def _audit_refusal(
        self, request: web.Request, exc: Unauthenticated | Forbidden, route: str
    ) -> None:
        """Log and audit a refused request: by the token's name, or the caller's address.

        The record is written in the background (within the writer's own timeout): a
        refusal is answered at once, whether or not the broker takes its record.
        """
        principal = request.get(_PRINCIPAL)
        actor = principal.name if principal is not None else client_actor(request.remote)
        log.warning("access_refused", status=exc.status, actor=actor, route=route)
        record = refused_request("ingest", actor, exc.status, route, self.clock.now())
        task = asyncio.get_running_loop().create_task(self._write_refusal(record))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _write_refusal(self, record: tuple[bytes, bytes]) -> None:
        try:
            await self.writer.write(self.settings.audit_topic, [record])
        except Exception as error:  # noqa: BLE001 - logged; the refusal stands regardless
            log.warning("refusal_not_audited", error=type(error).__name__)


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
        # The handlers read bodies themselves and enforce max_body_bytes with a JSON 413.
        client_max_size=settings.max_body_bytes + 1024,
    )
    app.router.add_post("/v1/events", handlers.post_event)
    app.router.add_post("/v1/events/batch", handlers.post_batch)
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get("/readyz", handlers.readyz)
    app.router.add_get("/metrics", handlers.metrics_view)
    app.router.add_get("/openapi.json", handlers.openapi_view)
    return app
