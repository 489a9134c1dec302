"""The timeliness report inside notify: a global table, the agent that feeds it, its pages.

**Durable and correct with several workers.** One compact record per obligation
(`state.ObligationState`) lives in the Faust *global* table `timeliness`: every notify
worker holds every partition of it, recovered from its compacted changelog
(`<app id>-timeliness-changelog`) at start and kept current as a standby afterwards, so
any worker answers the report for the whole partnership, not for its own partitions.

- Writes: the agent `timeliness` reads `safeguarding.outcomes.v1` (risk's outcome
  records) and `safeguarding.notifications.v1` (only `alert.closed` is used). Both are
  keyed by obligation id (an alert id is its obligation's id) and have the stream's
  partition count, so Faust's assignor gives partition p of both to one worker:
  every record of one obligation is merged by one worker at a time, in one coroutine
  (read, merge, write with no await in between). Faust writes the new value to the
  changelog partition of the input's partition, p again: one writer per changelog
  partition.
- A rebalance moves partition p to another worker only after that worker recovered
  the table (all of it: it is global) to the changelog's end, so it merges onto the
  latest value.
- Delivery is at least once (a crash replays records since the last commit) and the two
  topics are not ordered with each other: the merge is a join (commutative, idempotent),
  so a replay or another order gives the same record.
- The notifications topic is kept 30 days; the table keeps the closures for as long as
  their obligations.

Reads go through the pure `timeliness.timeliness` over the table's values.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import faust
import structlog
from faust.types import Message
from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry, Counter
from pydantic import ValidationError

from schemas.audit import AuditAction
from schemas.errors import InvalidEvent, invalid_event_from
from schemas.notifications import AlertClosedEvent, NotificationType, parse_notification
from schemas.outcomes import OutcomeEvent
from services.common.audit import AuditUnavailable, is_identifier, publish_audit
from services.common.auth import Authenticator, Principal, Role
from services.common.clock import Clock
from services.common.durations import parse_duration
from services.common.faust_web import authorise, error, out_of_scope, unavailable
from services.common.kafka import Topics
from services.notify.console.sessions import Sessions
from services.notify.reports.page import render_page
from services.notify.reports.settings import ReportSettings
from services.notify.reports.state import (
    ObligationState,
    expired,
    merge_closure,
    merge_outcome,
)
from services.notify.reports.timeliness import Query, Report, timeliness, to_csv

log = structlog.get_logger(__name__)

TABLE = "timeliness"
DEFAULT_OVER = timedelta(days=25)
DEFAULT_MONTHS = 6
PRUNE_BATCH = 500  # deletions per input message: a stream never held long
# One record is applied under the notify processor's error policy: `hold` dead-letters
# what can never be applied and retries the rest (services/common/processor.py).
Hold = Callable[[Message, Callable[[], Any], Callable[[Any], Awaitable[None]]], Awaitable[None]]


class TimelinessReports:
    """The `timeliness` global table, its agent and `GET /v1/reports/timeliness`."""

    def __init__(  # noqa: PLR0913 - the collaborators of one wiring block
        self,
        app: faust.App,
        *,
        topics: Topics,
        partitions: int,
        hold: Hold,
        auth: Authenticator,
        clock: Clock,
        audit_topic: faust.TopicT,
        registry: CollectorRegistry,
        settings: ReportSettings | None = None,
    ) -> None:
        self.app = app
        self.settings = settings or ReportSettings()
        # Per input partition, keys a background look found expired: the stream deletes
        # them (a table write needs the partition's stream), a batch per message.
        self.prunable: dict[int, list[bytes]] = {}
        self.topics = topics
        self.hold = hold
        self.auth = auth
        self.clock = clock
        self.audit_topic = audit_topic
        self.records = Counter(
            "safeguard_notify_timeliness_records_total",
            "Records merged into the timeliness report, by input (outcome, closure).",
            ["input"],
            registry=registry,
        )
        self.pruned = Counter(
            "safeguard_notify_timeliness_pruned_total",
            "Finished obligations the timeliness report forgot after its retention.",
            registry=registry,
        )
        # Bytes in and out (a compact JSON value): decoded only when a report is computed.
        # A buffer of one: a global table's partitions are all "active" for recovery, and
        # Faust applies an active partition's changelog records in batches of
        # `recovery_buffer_size` (1,000) even after recovery, so another worker's last
        # writes would wait for the next 1,000 (measured: never seen on the other worker).
        self.table = app.GlobalTable(
            TABLE,
            default=None,
            partitions=partitions,
            key_type=bytes,
            value_type=bytes,
            recovery_buffer_size=1,  # (Faust sets the standby buffer to 1 itself)
        )
        self.recovered = False
        self.table.on_recover(self._on_recovered)
        channel = app.topic(
            topics.outcomes, topics.notifications, key_serializer="raw", value_serializer="raw"
        )
        app.agent(channel, name="timeliness")(self._run)
        app.timer(self.settings.prune_interval_seconds, name="timeliness_prune")(self._look)
        self._add_pages()

    # -- the table ----------------------------------------------------------------------

    async def _on_recovered(self) -> None:
        # Until the first recovery the table is empty: a report then would be wrong, not
        # partial. Later rebalances keep the whole (global) table, so reports go on.
        self.recovered = True

    def states(self) -> Iterator[ObligationState]:
        """Yield every obligation's state this worker holds (all of them: the table is global)."""
        for raw in self.table.values():
            if raw is not None:
                yield ObligationState.decode(raw)

    def get(self, obligation_id: str) -> ObligationState | None:
        """Return one obligation's state, or None."""
        raw = self.table.get(obligation_id.encode())
        return None if raw is None else ObligationState.decode(raw)

    async def _run(self, stream: Any) -> None:  # noqa: ANN401 - faust streams are untyped
        async for event in stream.events():
            message = event.message
            if message.topic == self.topics.outcomes:
                await self.hold(message, functools.partial(self._outcome, message), self._write)
            elif _is_closure(message.value):
                # Other notification types are none of the report's business, and one that
                # is not valid is dead-lettered by the notify processor already.
                try:
                    update = self._closure(message)
                except InvalidEvent:
                    continue
                await self._write(update)
            self._prune(message.partition)

    def _outcome(self, message: Message) -> tuple[bytes, ObligationState, str]:
        try:
            event = OutcomeEvent.model_validate_json(message.value or b"")
        except ValidationError as exc:
            raise invalid_event_from(exc) from None  # dead-lettered as invalid_event
        outcome = event.data
        key = outcome.obligation_id.encode()
        merged = merge_outcome(self._state(key), outcome)
        return key, replace(merged, partition=message.partition), "outcome"

    def _closure(self, message: Message) -> tuple[bytes, ObligationState, str]:
        event = parse_notification(message.value or b"")
        assert isinstance(event, AlertClosedEvent)  # noqa: S101 - _is_closure said so
        key = event.data.alert_id.encode()
        reason = getattr(event.data, "reason", None)
        merged = merge_closure(self._state(key), event.data.closed_at, reason)
        return key, replace(merged, partition=message.partition), "closure"

    def _state(self, key: bytes) -> ObligationState | None:
        raw = self.table.get(key)
        return None if raw is None else ObligationState.decode(raw)

    async def _write(self, update: tuple[bytes, ObligationState, str]) -> None:
        key, state, kind = update
        # Inside the stream: Faust sends it to the changelog partition of this message's.
        self.table[key] = state.encode()
        self.records.labels(input=kind).inc()

    # -- forgetting ---------------------------------------------------------------------

    async def _look(self) -> None:
        """Find the finished obligations past the retention, of the partitions owned here."""
        if not self.recovered:
            return
        owned = {
            tp.partition
            for tp in self.app.assignor.assigned_actives()
            if tp.topic == self.topics.outcomes
        }
        horizon = (self.clock.now() - timedelta(days=self.settings.retention_days)).timestamp()
        items = [(key, raw) for key, raw in self.table.items() if raw is not None]

        def find() -> dict[int, list[bytes]]:
            found: dict[int, list[bytes]] = {}
            for key, raw in items:
                state = ObligationState.decode(raw)
                if state.partition in owned and expired(state, horizon):
                    found.setdefault(state.partition, []).append(key)
            return found

        # In a thread, as the report is: a million records take seconds to decode.
        self.prunable = await asyncio.to_thread(find)

    def _prune(self, partition: int) -> None:
        """Delete a batch of this partition's expired keys (inside its stream)."""
        keys = self.prunable.get(partition)
        if not keys:
            return
        horizon = (self.clock.now() - timedelta(days=self.settings.retention_days)).timestamp()
        batch, self.prunable[partition] = keys[:PRUNE_BATCH], keys[PRUNE_BATCH:]
        for key in batch:
            raw = self.table.get(key)
            # Checked again: a record may have arrived for it since the look.
            if raw is not None and expired(ObligationState.decode(raw), horizon):
                del self.table[key]
                self.pruned.inc()

    # -- the page -----------------------------------------------------------------------

    async def report(self, query: Query, principal: Principal) -> Report:
        """Return the report `query` asks for, of the areas `principal` may see.

        The table's values are copied on the event loop (a list of bytes: quick), then
        decoded and counted in a thread: about 20 µs an obligation, so a year of a large
        force's would hold the stream, escalations included, for seconds otherwise.
        """
        raws = [raw for raw in self.table.values() if raw is not None]
        now = self.clock.now()

        def compute() -> Report:
            states = (ObligationState.decode(raw) for raw in raws)
            return timeliness(states, query, now, principal.may_see_area)

        return await asyncio.to_thread(compute)

    async def viewed(self, query: Query, principal: Principal, kind: str) -> Report:
        """Record `report.viewed`, then return the report (raises AuditUnavailable first)."""
        await publish_audit(
            self.audit_topic, "notify", AuditAction.REPORT_VIEWED, principal, self.clock.now()
        )
        report = await self.report(query, principal)
        log.info("report_served", report="timeliness", principal=principal.name, format=kind)
        return report

    def _add_pages(self) -> None:
        reports = self

        @self.app.page("/v1/reports/timeliness")
        async def timeliness_page(self: View, request: Request) -> Response:
            return await reports.answer(self, request)

    async def answer(self, view: View, request: Request) -> Response:  # noqa: PLR0911 - one refusal per check
        """Answer `GET /v1/reports/timeliness` as JSON, CSV or HTML."""
        principal, refusal = authorise(view, request, self.auth, Role.READ)
        if refusal is not None:
            return refusal
        assert principal is not None  # noqa: S101 - authorise returns one or the other
        try:
            query = parse_query(request.query, self.clock.now())
            kind = representation(request.query.get("format"), request.headers.get("Accept"))
        except ValueError as exc:
            return error(view, 422, "invalid_query", str(exc))
        if query.area is not None and not principal.may_see_area(query.area):
            return out_of_scope(view, query.area)
        if not self.recovered:
            return view.json(
                {"error": "unavailable", "message": "the report's table is being recovered"},
                status=503,
                headers={"Retry-After": "5"},
            )
        try:
            report = await self.viewed(query, principal, kind)
        except AuditUnavailable:
            return unavailable(view, "the audit record of this read")
        if kind == "csv":
            return view.text(
                to_csv(report),
                content_type="text/csv",
                headers={"Content-Disposition": 'attachment; filename="timeliness.csv"'},
            )
        if kind == "html":
            return view.html(render_page(report))
        return view.json(report.to_json())


def _is_closure(value: bytes | None) -> bool:
    """Tell cheaply whether a notification is an `alert.closed` (most are deliveries)."""
    if not value or b'"alert.closed"' not in value:
        return False
    try:
        return bool(json.loads(value).get("type") == NotificationType.CLOSED)
    except (ValueError, AttributeError):
        return False


def parse_query(query: Any, now: datetime) -> Query:  # noqa: ANN401 - aiohttp's MultiDict
    """Return the report's query from `from`, `to`, `rule`, `area` and `over`.

    `from` and `to` are dates (`2026-01-01`, midnight UTC) or RFC 3339 times; the period
    is [from, to). Without them: the last six whole months and the current one. Raises
    ValueError (a 422) for anything else, extreme dates and durations included.
    """
    try:
        return _parse_query(query, now)
    except OverflowError:
        raise ValueError("from, to or over is out of range") from None


def _parse_query(query: Any, now: datetime) -> Query:  # noqa: ANN401 - aiohttp's MultiDict
    end = _moment(query.get("to"), "to")
    if end is None:
        end = _month_start(now, 1)
    start = _moment(query.get("from"), "from")
    if start is None:
        start = _month_start(end - timedelta(days=1), -DEFAULT_MONTHS)
    if start >= end:
        raise ValueError("from must be before to")
    raw_over = query.get("over") or None
    try:
        over = parse_duration(raw_over) if raw_over is not None else DEFAULT_OVER
    except ValueError:
        raise ValueError("over must be a duration such as 25d, 36h or 14d") from None
    if over <= timedelta(0):
        raise ValueError("over must be more than 0s")
    rule, area = query.get("rule") or None, query.get("area") or None
    for name, value in (("rule", rule), ("area", area)):
        # Identifiers only: they are echoed in the answer, so free text must not get in.
        if value is not None and not is_identifier(value):
            raise ValueError(f"{name} must be an identifier (letters, digits, . _ : -)")
    return Query(start=start, end=end, over=over, rule=rule, area=area)


def _moment(text: str | None, name: str) -> datetime | None:
    if not text:
        return None
    try:
        if len(text) == len("2026-01-01"):
            return datetime.combine(date.fromisoformat(text), time(), UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{name} must be a date (2026-01-01) or an RFC 3339 time") from None
    if moment.utcoffset() is None:
        raise ValueError(f"{name}: a time needs an offset (Z or +01:00)")
    return moment.astimezone(UTC)


def _month_start(moment: datetime, months: int) -> datetime:
    index = moment.year * 12 + moment.month - 1 + months
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def representation(fmt: str | None, accept: str | None) -> str:
    """Return `json`, `csv` or `html`: `format=` wins, then the Accept header, then JSON."""
    if fmt is not None:
        if fmt not in {"json", "csv", "html"}:
            raise ValueError("format must be json, csv or html")
        return fmt
    accept = (accept or "").lower()
    if "text/csv" in accept:
        return "csv"
    if "text/html" in accept:
        return "html"
    return "json"


def add_reports(  # noqa: PLR0913 - the collaborators of one wiring block
    app: faust.App,
    *,
    topics: Topics,
    partitions: int,
    hold: Hold,
    auth: Authenticator,
    clock: Clock,
    audit_topic: faust.TopicT,
    registry: CollectorRegistry,
    sessions: Sessions | None = None,
    settings: ReportSettings | None = None,
) -> TimelinessReports:
    """Add the timeliness report to the notify app (its one wiring call).

    With the console's `sessions`, the report is also a console page for signed-in people
    (`/console/reports/timeliness`, reports/console.py).
    """
    reports = TimelinessReports(
        app,
        topics=topics,
        partitions=partitions,
        hold=hold,
        auth=auth,
        clock=clock,
        audit_topic=audit_topic,
        registry=registry,
        settings=settings,
    )
    if sessions is not None:
        from services.notify.reports.console import add_console_report  # noqa: PLC0415

        add_console_report(app, reports, sessions)
    return reports
