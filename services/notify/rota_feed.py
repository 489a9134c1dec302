"""Rota calendars: iCalendar feeds a force already keeps, fetched, cached and watched.

Each feed the policy names (`rota.<area>.<route>.calendar`) is fetched every `refresh`
and expanded into shifts (`rota.Span`: recurring events and their exceptions
included) from a day back to `HORIZON` ahead. A fetch that fails (unreachable, not
2xx, not iCalendar) keeps the last good copy, is counted in
`safeguard_notify_rota_refresh_failures_total{calendar}` and tried again a minute later;
`safeguard_notify_rota_age_seconds{calendar}` is how old the copy in use is (+Inf
before any), so an alert can say a rota has gone stale. With a cache folder the last
good copy survives a restart.

The `calendar` label is the feed's place in the policy (`north.duty-manager`), never
its URL: a feed URL may carry a token, so it is never logged either (only its host).
Events whose SUMMARY names no receiver are skipped (`on_duty` falls back), counted in
the log by number, never quoted: a SUMMARY may hold a person's name.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import aiohttp
import icalendar
import recurring_ical_events
import structlog
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from services.common.clock import Clock
from services.common.environment import is_development
from services.notify.rota import CalendarFeed, Calendars, Rota, Span

log = structlog.get_logger(__name__)

HORIZON = timedelta(days=35)
RETRY_AFTER_FAILURE = timedelta(minutes=1)
MAX_BYTES = 5 * 1024 * 1024
FETCH_TIMEOUT_SECONDS = 15.0


class FeedError(Exception):
    """A feed could not be read: unreachable, refused, or not an iCalendar file."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_calendar(  # noqa: PLR0913 - the feed, its text, the window, where, and who exists
    feed: CalendarFeed,
    text: bytes,
    *,
    start: datetime,
    end: datetime,
    zone: ZoneInfo,
    known: set[str],
) -> tuple[list[Span], int]:
    """Return the feed's shifts overlapping [start, end), and how many events named nobody.

    Raises `FeedError` when the text is not an iCalendar file.
    """
    try:
        calendar = icalendar.Calendar.from_ical(text)
        events = recurring_ical_events.of(calendar).between(start, end)
    except (ValueError, KeyError, TypeError) as exc:
        raise FeedError("not_icalendar") from exc
    spans: list[Span] = []
    unnamed = 0
    for event in events:
        summary = str(event.get("SUMMARY", ""))
        receiver = feed.receiver(summary)
        if receiver not in known:
            unnamed += 1
            continue
        first = _moment(event.decoded("DTSTART"), zone)
        last = _moment(event.decoded("DTEND"), zone) if "DTEND" in event else None
        if last is None:
            duration = event.decoded("DURATION") if "DURATION" in event else timedelta(days=1)
            last = first + duration
        spans.append(Span(first, last, (receiver,)))
    spans.sort(key=lambda s: (s.start, s.end, s.receivers))
    return spans, unnamed


def _moment(value: Any, zone: ZoneInfo) -> datetime:  # noqa: ANN401 - icalendar's decoded value
    """Return an event time as an aware datetime: dates at local midnight, floating local."""
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=zone)
    if isinstance(value, date):
        return datetime.combine(value, time(0), tzinfo=zone)
    raise FeedError("bad_time")


@dataclass
class _Copy:
    """The last good copy of one feed."""

    raw: bytes | None = None
    fetched_at: datetime | None = None
    next_at: datetime | None = None


class RotaFeeds:
    """Every rota calendar of the policy: refresh when due, keep the last good copy."""

    def __init__(  # noqa: PLR0913 - the rota, where feeds are, and what watches them
        self,
        rota: Rota,
        *,
        zone: ZoneInfo,
        known: set[str],
        urls: Mapping[str, str],
        clock: Clock,
        registry: CollectorRegistry,
        cache_dir: Path | None = None,
        fetch: Callable[[str], Any] | None = None,
    ) -> None:
        self._zone = zone
        self._known = known
        self._clock = clock
        self._cache_dir = cache_dir
        self._feeds = rota.calendars()
        self._labels = _labels(rota)
        self._urls = {key: urls.get(key, key) for key in self._feeds}
        self._fetch = fetch or self._http_fetch
        self._copies = {key: _Copy() for key in self._feeds}
        self._spans: dict[str, list[Span]] = {key: [] for key in self._feeds}
        self.failures = Counter(
            "safeguard_notify_rota_refresh_failures_total",
            "Rota calendar refreshes that failed (the last good copy stays in use), by calendar.",
            ["calendar"],
            registry=registry,
        )
        for key in self._feeds:
            self.failures.labels(calendar=self._labels[key])
        registry.register(_AgeCollector(self))
        self._load_cache()

    def snapshot(self) -> Calendars:
        """Return every feed's shifts as last fetched (what `chain_for` takes)."""
        return {key: tuple(spans) for key, spans in self._spans.items()}

    def ages(self) -> dict[str, float]:
        """Return each feed's copy age in seconds by label (+Inf before any copy)."""
        now = self._clock.now()
        return {
            self._labels[key]: (
                math.inf
                if copy.fetched_at is None
                else max(0.0, (now - copy.fetched_at).total_seconds())
            )
            for key, copy in self._copies.items()
        }

    async def refresh_due(self) -> None:
        """Fetch every feed whose refresh is due; failures keep the last good copy."""
        now = self._clock.now()
        due = [k for k, c in self._copies.items() if c.next_at is None or c.next_at <= now]
        await asyncio.gather(*(self._refresh(key, now) for key in due))

    async def _refresh(self, key: str, now: datetime) -> None:
        feed = self._feeds[key]
        copy = self._copies[key]
        try:
            raw = await self._fetch(self._urls[key])
            self._expand(key, raw, now)
        except FeedError as exc:
            self.failures.labels(calendar=self._labels[key]).inc()
            copy.next_at = now + min(RETRY_AFTER_FAILURE, feed.refresh)
            log.warning(
                "rota_refresh_failed",
                calendar=self._labels[key],
                host=urlsplit(self._urls[key]).hostname,
                reason=exc.reason,
                kept_copy_from=copy.fetched_at.isoformat() if copy.fetched_at else None,
            )
            return
        copy.raw, copy.fetched_at, copy.next_at = raw, now, now + feed.refresh
        self._save_cache(key, raw)

    def _expand(self, key: str, raw: bytes, now: datetime) -> None:
        spans, unnamed = parse_calendar(
            self._feeds[key],
            raw,
            start=now - timedelta(days=1),
            end=now + HORIZON,
            zone=self._zone,
            known=self._known,
        )
        if unnamed:
            log.info("rota_events_without_receiver", calendar=self._labels[key], count=unnamed)
        self._spans[key] = spans

    async def _http_fetch(self, url: str) -> bytes:
        if not is_development() and urlsplit(url).scheme.lower() != "https":
            raise FeedError("not_https")
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(
                    url,
                    timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT_SECONDS),
                    allow_redirects=False,
                ) as response,
            ):
                if response.status != 200:  # noqa: PLR2004 - only a whole feed will do
                    raise FeedError(f"http_{response.status}")
                raw = await response.content.read(MAX_BYTES + 1)
        except TimeoutError as exc:
            raise FeedError("timeout") from exc
        except aiohttp.ClientError as exc:
            raise FeedError(type(exc).__name__) from exc
        if len(raw) > MAX_BYTES:
            raise FeedError("too_large")
        return raw

    def _cache_path(self, key: str) -> Path | None:
        if self._cache_dir is None:
            return None
        return self._cache_dir / f"rota-{self._labels[key]}.ics"

    def _save_cache(self, key: str, raw: bytes) -> None:
        path = self._cache_path(key)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_bytes(raw)
        partial.replace(path)

    def _load_cache(self) -> None:
        now = self._clock.now()
        for key in self._feeds:
            path = self._cache_path(key)
            if path is None or not path.exists():
                continue
            try:
                self._expand(key, path.read_bytes(), now)
            except (FeedError, OSError):
                continue
            modified = datetime.fromtimestamp(path.stat().st_mtime, tz=now.tzinfo)
            self._copies[key] = _Copy(raw=None, fetched_at=min(modified, now), next_at=None)


def _labels(rota: Rota) -> dict[str, str]:
    labels: dict[str, str] = {}
    for area, route, entry in rota.entries():
        if entry.calendar is not None:
            labels.setdefault(entry.calendar.key, f"{area or 'default'}.{route}")
    return labels


class _AgeCollector(Collector):
    """`safeguard_notify_rota_age_seconds`, read at scrape time."""

    def __init__(self, feeds: RotaFeeds) -> None:
        self._feeds = feeds

    def collect(self) -> Sequence[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "safeguard_notify_rota_age_seconds",
            "Age of the rota calendar copy in use, by calendar (+Inf before the first fetch).",
            labels=["calendar"],
        )
        for label, age in self._feeds.ages().items():
            family.add_metric([label], age)
        return [family]
