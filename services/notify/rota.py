"""Who is on duty: the policy's `rota` section, and who it names at a given time.

A rota decides the receivers of a route (`duty-manager`, `senior-manager`) in an area at
a moment, in this order:

1. `cover`: dated exceptions (a swap, leave, a bank holiday), local start and end;
2. `calendar`: an iCalendar feed the force already keeps (fetched and cached by
   `services/notify/rota_feed.py`; its shifts are an input here, never fetched here);
3. `shifts`: a weekly pattern, local times, a shift ending at or before its start
   runs past midnight;
4. nobody on the rota: the routing table's receivers for the route (`routing`).

Shifts are half-open: one from 07:00 to 19:00 has its person on duty at 07:00:00 and
the next shift's at 19:00:00. Local times are the policy's `timezone`, across clock
changes. Everything here is pure: `on_duty` takes the time and the calendars' shifts
as arguments, so the alert's chain is the same whenever it is computed for its raise.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Annotated, Literal, Self
from zoneinfo import ZoneInfo

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from schemas.notifications import ReceiverName
from services.common.durations import Duration

RouteName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
SecretName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]{1,64}$")]


class Weekday(StrEnum):
    """Days of the week as a rota names them."""

    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Shift(_Strict):
    """A weekly shift: on `days`, from `start` to `end` local time, these receivers."""

    days: tuple[Weekday, ...] = tuple(Weekday)
    start: time
    end: time
    receivers: tuple[ReceiverName, ...] = Field(min_length=1)

    @field_validator("start", "end", mode="before")
    @classmethod
    def _clock(cls, value: object) -> object:
        # YAML 1.1 reads an unquoted 07:00 as the number 420 (base 60): ask for quotes.
        if isinstance(value, int):
            raise ValueError("write local times in quotes, such as '07:00'")  # noqa: TRY004
        return value

    @property
    def overnight(self) -> bool:
        """Tell whether the shift ends the next day (its end at or before its start)."""
        return self.end <= self.start


class Cover(_Strict):
    """A dated exception to the weekly pattern, local times (no offset) or with one."""

    start: datetime
    end: datetime
    receivers: tuple[ReceiverName, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.end <= self.start:
            raise ValueError("a cover's `end` must be after its `start`")
        return self


class CalendarFeed(_Strict):
    """An iCalendar feed of the route's shifts: each event's SUMMARY names who is on duty.

    `url` may be in the policy when it carries no credential; a feed URL with a token
    in it is a secret, set as `NOTIFY_ROTA_CALENDARS__<SECRET>` and named here.
    `names` maps an event's SUMMARY (as written, trimmed, any case) to a receiver;
    without an entry the SUMMARY itself must be a receiver's name.
    """

    url: AnyHttpUrl | None = None
    secret: SecretName | None = None
    refresh: Duration = timedelta(minutes=15)
    names: dict[str, ReceiverName] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.url is None) == (self.secret is None):
            raise ValueError("a calendar needs exactly one of `url` and `secret`")
        if self.refresh < timedelta(minutes=1):
            raise ValueError("a calendar's `refresh` must be at least 1m")
        return self

    @property
    def key(self) -> str:
        """Return the name the feed's fetched shifts are kept under."""
        return self.secret or str(self.url)

    def receiver(self, summary: str) -> str:
        """Return the receiver a calendar event's SUMMARY names (may be unknown)."""
        wanted = summary.strip().casefold()
        for text, name in self.names.items():
            if text.strip().casefold() == wanted:
                return name
        return summary.strip()


class RouteRota(_Strict):
    """Who is on duty for one route: dated cover, a calendar, a weekly pattern."""

    cover: tuple[Cover, ...] = ()
    calendar: CalendarFeed | None = None
    shifts: tuple[Shift, ...] = ()

    @model_validator(mode="after")
    def _something(self) -> Self:
        if not (self.cover or self.calendar or self.shifts):
            raise ValueError("a route's rota needs `shifts`, `calendar` or `cover`")
        return self

    def receiver_names(self) -> set[str]:
        """Return every receiver the rota names in the policy (not the calendar's)."""
        names = {n for s in self.shifts for n in s.receivers}
        names.update(n for c in self.cover for n in c.receivers)
        if self.calendar is not None:
            names.update(self.calendar.names.values())
        return names


class Rota(_Strict):
    """Rotas by route, by default and per area (an area's entries override the default's)."""

    default: dict[RouteName, RouteRota] = Field(default_factory=dict)
    areas: dict[str, dict[RouteName, RouteRota]] = Field(default_factory=dict)

    def for_route(self, area: str | None, route: str) -> RouteRota | None:
        """Return the rota deciding `route` in `area`, if any."""
        if area is not None and route in self.areas.get(area, {}):
            return self.areas[area][route]
        return self.default.get(route)

    def entries(self) -> Iterable[tuple[str | None, str, RouteRota]]:
        """Return every (area or None, route, rota) of the section."""
        for route, rota in self.default.items():
            yield None, route, rota
        for area, routes in self.areas.items():
            for route, rota in routes.items():
                yield area, route, rota

    def calendars(self) -> dict[str, CalendarFeed]:
        """Return every calendar feed, by the key its shifts are kept under."""
        return {r.calendar.key: r.calendar for _, _, r in self.entries() if r.calendar}


@dataclass(frozen=True)
class Span:
    """Someone on duty from `start` (inclusive) to `end` (exclusive), aware times."""

    start: datetime
    end: datetime
    receivers: tuple[str, ...]

    def covers(self, at: datetime) -> bool:
        """Tell whether `at` falls in the span."""
        return self.start <= at < self.end


Source = Literal["cover", "calendar", "shifts", "routing"]


@dataclass(frozen=True)
class OnDuty:
    """Who a route reaches at a moment, where that came from, and until when."""

    receivers: tuple[str, ...]
    source: Source
    until: datetime | None
    """When this answer may change (the span's end); None when not known."""


Calendars = Mapping[str, Sequence[Span]]
"""Fetched calendar shifts, by feed key (`CalendarFeed.key`)."""


def on_duty(  # noqa: PLR0913 - the rota, the routing fallback, where and when, and the feeds
    rota: RouteRota | None,
    fallback: Sequence[str],
    *,
    at: datetime,
    zone: ZoneInfo,
    calendars: Calendars,
    known: Iterable[str],
) -> OnDuty:
    """Return who `rota` puts on duty at `at`, else the routing's `fallback` receivers.

    `known` is the policy's receiver names: a calendar naming someone who is not a
    receiver is skipped (the next source decides), so a typo in a feed never leaves a
    level with nobody to tell.
    """
    if rota is not None:
        for span in _cover_spans(rota.cover, zone):
            if span.covers(at):
                return OnDuty(span.receivers, "cover", span.end)
        if rota.calendar is not None:
            receivers = set(known)
            # Overlapping events (two on duty, a handover) tell everyone on at `at`.
            now_on = [s for s in calendars.get(rota.calendar.key, ()) if s.covers(at)]
            names = tuple(dict.fromkeys(n for s in now_on for n in s.receivers if n in receivers))
            if names:
                return OnDuty(names, "calendar", min(s.end for s in now_on))
        span_now = shift_at(rota.shifts, at, zone)
        if span_now is not None:
            return OnDuty(span_now.receivers, "shifts", span_now.end)
    return OnDuty(tuple(fallback), "routing", None)


def _cover_spans(cover: Sequence[Cover], zone: ZoneInfo) -> list[Span]:
    return [Span(_aware(c.start, zone), _aware(c.end, zone), c.receivers) for c in cover]


def _aware(at: datetime, zone: ZoneInfo) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=zone)


def shift_at(shifts: Sequence[Shift], at: datetime, zone: ZoneInfo) -> Span | None:
    """Return the weekly shift on duty at `at` (the earliest listed, if several)."""
    today = at.astimezone(zone).date()
    for shift in shifts:
        # An overnight shift that started yesterday is still on duty this morning.
        for day in (today, today - timedelta(days=1)):
            span = _shift_on(shift, day, zone)
            if span is not None and span.covers(at):
                return span
    return None


def _shift_on(shift: Shift, day: date, zone: ZoneInfo) -> Span | None:
    if list(Weekday)[day.weekday()] not in shift.days:
        return None
    start = datetime.combine(day, shift.start, tzinfo=zone)
    end_day = day + timedelta(days=1) if shift.overnight else day
    end = datetime.combine(end_day, shift.end, tzinfo=zone)
    return Span(start, end, shift.receivers)
