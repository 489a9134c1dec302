"""Who is on duty: the rota decides level 1 and level 2 when an alert is raised.

Pure rules first (shifts at their boundaries, overnight and across the clock change,
cover, calendars, the routing table as the fallback), then an alert raised one second
before and one second after a shift change delivered through the real ladder and the
real deliverer to a real SMTP server, then the calendar feed against a real HTTP server
that goes down: the last good copy kept, the failure counted, the copy's age gauged.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Self
from zoneinfo import ZoneInfo

import pytest
import yaml
from aiohttp import web
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from devtools.broker import free_port
from devtools.stack import DEFAULT_POLICY
from schemas.alerts import AlertRaised, EventRef, Severity, SubjectKind
from services.cli.main import app
from services.common.clock import FakeClock
from services.common.policy_file import PolicyError
from services.common.smtp import SmtpSettings
from services.notify.channels import EmailChannel, WebhookChannel
from services.notify.content import Content, Presentation
from services.notify.delivery import Deliverer
from services.notify.escalation import Limits, advance, open_record
from services.notify.metrics import NotifyMetrics
from services.notify.policy import NotifyPolicy, chain_for, load_policy, on_duty_now
from services.notify.retry import Backoff
from services.notify.rota import Span
from services.notify.rota_feed import RotaFeeds, parse_calendar
from tests.fixtures.smtp import SmtpInbox

LONDON = ZoneInfo("Europe/London")
SECOND = timedelta(seconds=1)

ROTA = {
    "areas": {
        "north": {
            "duty-manager": {
                "shifts": [
                    {"start": "07:00", "end": "19:00", "receivers": ["north-day"]},
                    {"start": "19:00", "end": "07:00", "receivers": ["north-night"]},
                ],
                "cover": [
                    {
                        "start": "2026-12-25T07:00:00",
                        "end": "2026-12-26T07:00:00",
                        "receivers": ["christmas-cover"],
                    }
                ],
            },
            "senior-manager": {
                "calendar": {"secret": "north_seniors", "names": {"Supt A": "supt-a"}},
                "shifts": [
                    {
                        "days": ["mon", "tue", "wed", "thu", "fri"],
                        "start": "08:00",
                        "end": "18:00",
                        "receivers": ["supt-b"],
                    }
                ],
            },
        }
    }
}
PEOPLE = ["north-day", "north-night", "christmas-cover", "supt-a", "supt-b"]


def rota_policy(folder: Path, rota: dict[str, object] = ROTA) -> Path:
    policy = yaml.safe_load(DEFAULT_POLICY.read_text())
    for name in PEOPLE:
        policy["receivers"][name] = {"channel": "email", "to": [f"{name}@example.org"]}
    policy["rota"] = rota
    path = folder / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    return path


@pytest.fixture
def policy(tmp_path: Path) -> NotifyPolicy:
    return load_policy(rota_policy(tmp_path))


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=LONDON)


def told(
    policy: NotifyPolicy, at: datetime, area: str | None = "north", level: int = 1
) -> list[str]:
    chain = chain_for(policy, Severity.CRITICAL, area, default_url="http://gw/hook", at=at)
    return [r.name for r in chain.levels[level - 1].recipients]


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        ("2026-12-03T18:59:59", ["north-day"]),
        ("2026-12-03T19:00:00", ["north-night"]),  # half-open: the next shift from its start
        ("2026-12-04T06:59:59", ["north-night"]),  # yesterday's overnight shift, still on
        ("2026-12-04T07:00:00", ["north-day"]),
        # Summer time: the boundary is 07:00 on the wall clock, 06:00 UTC.
        ("2026-07-01T06:59:59", ["north-night"]),
        ("2026-07-01T07:00:00", ["north-day"]),
        # Dated cover beats the weekly pattern.
        ("2026-12-25T06:59:59", ["north-night"]),
        ("2026-12-25T07:00:00", ["christmas-cover"]),
        ("2026-12-26T06:59:59", ["christmas-cover"]),
    ],
)
def test_level_one_goes_to_whoever_the_rota_has_on_duty_at_the_raise(
    policy: NotifyPolicy, moment: str, expected: list[str]
) -> None:
    assert told(policy, local(moment)) == expected


def test_the_rota_is_read_in_local_time_across_the_clock_change(policy: NotifyPolicy) -> None:
    # 29 March 2026: clocks go forward at 01:00 GMT. 07:00 BST is 06:00 UTC that day.
    assert told(policy, datetime(2026, 3, 29, 5, 59, 59, tzinfo=UTC)) == ["north-night"]
    assert told(policy, datetime(2026, 3, 29, 6, 0, 0, tzinfo=UTC)) == ["north-day"]


def test_without_the_raise_time_or_outside_the_rota_the_routing_table_decides(
    policy: NotifyPolicy,
) -> None:
    chain = chain_for(policy, Severity.CRITICAL, "north", default_url=None)
    assert [r.name for r in chain.levels[0].recipients] == ["duty-desk"]
    assert told(policy, local("2026-12-03T12:00:00"), area="south") == ["duty-desk"]


def test_level_two_from_the_calendar_else_weekday_shifts_else_routing(
    policy: NotifyPolicy,
) -> None:
    friday = local("2026-12-04T10:00:00")
    saturday = local("2026-12-05T10:00:00")
    assert told(policy, friday, level=2) == ["supt-b"]  # weekday shift
    assert told(policy, saturday, level=2) == ["duty-desk", "senior-managers"]  # routing
    calendars = {
        "north_seniors": (
            Span(friday - timedelta(hours=1), friday + timedelta(hours=1), ("supt-a",)),
            Span(saturday, saturday + SECOND, ("someone-unknown",)),
        )
    }
    chain = chain_for(
        policy, Severity.CRITICAL, "north", default_url=None, at=friday, calendars=calendars
    )
    assert [r.name for r in chain.levels[1].recipients] == ["supt-a"]
    # A calendar naming no receiver never leaves a level with nobody: the next source.
    chain = chain_for(
        policy, Severity.CRITICAL, "north", default_url=None, at=saturday, calendars=calendars
    )
    assert [r.name for r in chain.levels[1].recipients] == ["duty-desk", "senior-managers"]


def test_who_is_on_duty_now_says_where_it_came_from_and_until_when(policy: NotifyPolicy) -> None:
    now = on_duty_now(policy, "north", local("2026-12-03T17:30:00"))
    assert now["duty-manager"].receivers == ("north-day",)
    assert now["duty-manager"].source == "shifts"
    assert now["duty-manager"].until == local("2026-12-03T19:00:00")
    assert (now["senior-manager"].receivers, now["senior-manager"].source) == (
        ("supt-b",),
        "shifts",
    )
    assert now["senior-manager"].until == local("2026-12-03T18:00:00")
    assert now["strategic-lead"].source == "routing"
    assert now["strategic-lead"].until is None


@pytest.mark.parametrize(
    ("rota", "message"),
    [
        (
            {
                "default": {
                    "duty-manager": {
                        "shifts": [{"start": "07:00", "end": "19:00", "receivers": ["nobody"]}]
                    }
                }
            },
            "names unknown receivers",
        ),
        (
            {
                "default": {
                    "night-desk": {
                        "shifts": [{"start": "07:00", "end": "19:00", "receivers": ["north-day"]}]
                    }
                }
            },
            "not in routing.default",
        ),
        (
            {
                "default": {
                    "duty-manager": {
                        "shifts": [{"start": 420, "end": "19:00", "receivers": ["north-day"]}]
                    }
                }
            },
            "in quotes",
        ),
        ({"default": {"duty-manager": {}}}, "needs `shifts`, `calendar` or `cover`"),
        (
            {"default": {"duty-manager": {"calendar": {"url": "https://x/r.ics", "secret": "s"}}}},
            "exactly one of",
        ),
    ],
)
def test_a_rota_that_cannot_work_is_refused(
    tmp_path: Path, rota: dict[str, object], message: str
) -> None:
    with pytest.raises(PolicyError, match=message):
        load_policy(rota_policy(tmp_path, rota))


def test_an_alert_raised_a_second_either_side_of_a_shift_change_reaches_the_right_person(
    policy: NotifyPolicy, smtp_inbox: SmtpInbox
) -> None:
    change = local("2026-12-03T19:00:00")
    for raised_at, alert_id in ((change - SECOND, "al-before"), (change + SECOND, "al-after")):
        alert = AlertRaised(
            alert_id=alert_id,
            rule="child-in-custody",
            severity=Severity.CRITICAL,
            subject_kind=SubjectKind.CHILD,
            child_id="C-ROTA-1",
            area="north",
            trigger=EventRef(source="urn:test", id=alert_id),
            due_at=raised_at - timedelta(minutes=1),
            raised_at=raised_at,
            summary="A charged child still in police custody 4h after detention",
        )
        # As notify does at the raise: the chain with who was on duty, then level 1.
        chain = chain_for(policy, alert.severity, alert.area, default_url=None, at=raised_at)
        record = open_record(alert, chain, raised_at)
        (pending,) = advance(record, raised_at, Limits()).dispatches
        clock = FakeClock(raised_at)
        deliverer = Deliverer(
            webhook=WebhookChannel(clock),
            email=EmailChannel(
                SmtpSettings(host="127.0.0.1", port=smtp_inbox.port, security="none")
            ),
            secrets={},
            backoff=Backoff(),
            clock=clock,
            metrics=NotifyMetrics(CollectorRegistry()),
        )
        content = Content.of(record, pending, None, Presentation.of(policy))
        assert asyncio.run(deliverer.deliver(content, pending)).outcome == "sent"
    to = {
        alert_id: sorted(
            m.to[0] for m in smtp_inbox.messages if alert_id in m.message["Message-ID"]
        )
        for alert_id in ("al-before", "al-after")
    }
    assert to == {"al-before": ["north-day@example.org"], "al-after": ["north-night@example.org"]}


# -- calendar feeds ----------------------------------------------------------------------

ICS = b"""BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//force//rota//EN
BEGIN:VEVENT
UID:seniors-weekly@force
DTSTAMP:20261101T000000Z
DTSTART;TZID=Europe/London:20261130T080000
DTEND;TZID=Europe/London:20261130T200000
RRULE:FREQ=WEEKLY;BYDAY=MO,WE,FR
EXDATE;TZID=Europe/London:20261204T080000
SUMMARY:Supt A
END:VEVENT
BEGIN:VEVENT
UID:seniors-friday@force
DTSTAMP:20261101T000000Z
DTSTART;TZID=Europe/London:20261204T080000
DTEND;TZID=Europe/London:20261204T200000
SUMMARY:supt-b
END:VEVENT
BEGIN:VEVENT
UID:leave@force
DTSTAMP:20261101T000000Z
DTSTART;VALUE=DATE:20261205
DTEND;VALUE=DATE:20261206
SUMMARY:A person's name on leave
END:VEVENT
END:VCALENDAR
"""


def test_a_calendar_expands_recurrences_and_exceptions_and_skips_unknown_names(
    policy: NotifyPolicy,
) -> None:
    feed = policy.rota.calendars()["north_seniors"]
    spans, unnamed = parse_calendar(
        feed,
        ICS,
        start=local("2026-12-01T00:00:00"),
        end=local("2026-12-08T00:00:00"),
        zone=LONDON,
        known=set(policy.receivers),
    )
    assert [(s.start.date().isoformat(), s.receivers) for s in spans] == [
        ("2026-12-02", ("supt-a",)),  # Wednesday
        ("2026-12-04", ("supt-b",)),  # Friday: the weekly event is excepted, cover instead
        ("2026-12-07", ("supt-a",)),  # Monday
    ]
    assert spans[0].start == local("2026-12-02T08:00:00")
    assert unnamed == 1


class IcsServer:
    """Serves a rota calendar on a loopback port; `status` makes it fail."""

    def __init__(self) -> None:
        self.port = free_port()
        self.status = 200
        self.body = ICS
        self.requests = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/rota/seniors.ics?token=s3cr3t"

    async def _serve(self, _request: web.Request) -> web.Response:
        self.requests += 1
        return web.Response(status=self.status, body=self.body, content_type="text/calendar")

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/rota/seniors.ics", self._serve)
        self._runner = web.AppRunner(app, access_log=None)  # its log holds the URL: not ours
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def __enter__(self) -> Self:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def __exit__(self, *_: object) -> None:
        assert self._runner is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


@pytest.fixture
def ics() -> Iterator[IcsServer]:
    with IcsServer() as server:
        yield server


def test_a_failed_refresh_keeps_the_last_good_copy_counts_it_and_ages_it(
    policy: NotifyPolicy, ics: IcsServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(local("2026-12-04T09:00:00"))
    registry = CollectorRegistry()

    def feeds(registry: CollectorRegistry) -> RotaFeeds:
        return RotaFeeds(
            policy.rota,
            zone=policy.zone,
            known=set(policy.receivers),
            urls={"north_seniors": ics.url},
            clock=clock,
            registry=registry,
            cache_dir=tmp_path / "cache",
        )

    rota = feeds(registry)
    age = {"calendar": "north.senior-manager"}
    assert registry.get_sample_value("safeguard_notify_rota_age_seconds", age) == float("inf")
    asyncio.run(rota.refresh_due())
    friday = rota.snapshot()["north_seniors"]
    assert [s.receivers for s in friday][:1] == [("supt-b",)]
    on = on_duty_now(policy, "north", clock.now(), rota.snapshot())["senior-manager"]
    assert (on.receivers, on.source) == (("supt-b",), "calendar")

    # The feed goes down: 15 min later the refresh fails, the copy stays in use.
    ics.status = 503
    clock.advance(timedelta(minutes=15))
    asyncio.run(rota.refresh_due())
    failures = "safeguard_notify_rota_refresh_failures_total"
    assert registry.get_sample_value(failures, age) == 1
    assert rota.snapshot()["north_seniors"] == friday
    assert registry.get_sample_value("safeguard_notify_rota_age_seconds", age) == 15 * 60
    # Tried again a minute later, not at the next 15 min.
    clock.advance(timedelta(minutes=1))
    asyncio.run(rota.refresh_due())
    assert registry.get_sample_value(failures, age) == 2
    # The log names the calendar and the host, never the URL's token.
    assert "s3cr3t" not in caplog.text

    # A restart while the feed is still down starts from the cached copy.
    again = feeds(CollectorRegistry())
    assert again.snapshot()["north_seniors"] == friday

    # Not a calendar at all: refused like a failure, the copy kept.
    ics.status, ics.body = 200, b"<html>sign in</html>"
    clock.advance(timedelta(minutes=1))
    asyncio.run(rota.refresh_due())
    assert registry.get_sample_value(failures, age) == 3
    assert rota.snapshot()["north_seniors"] == friday


def test_policy_routes_at_a_time_shows_who_the_rota_would_tell(tmp_path: Path) -> None:
    path = rota_policy(tmp_path)
    runner = CliRunner()

    def level_one(at: str) -> list[str]:
        result = runner.invoke(app, ["policy", "routes", str(path), "--output", "json", "--at", at])
        assert result.exit_code == 0, result.output
        found = json.loads(result.stdout)
        ladder = next(
            r["recipients"]
            for r in found["ladders"]
            if r["area"] == "north" and r["severity"] == "critical" and r["level"] == 1
        )
        # Per rule too: who a child-in-custody raise in the north reaches at once.
        (rule,) = [
            r["recipients"]
            for r in found["rules"]
            if r["rule"] == "child-in-custody"
            and r["area"] == "north"
            and r["severity"] == "critical"
        ]
        assert [f"{name} (email {name}@example.org)" for name in rule] == ladder
        return ladder

    assert level_one("2026-12-03T18:59:59") == ["north-day (email north-day@example.org)"]
    assert level_one("2026-12-03T19:00:00") == ["north-night (email north-night@example.org)"]
    assert level_one("2026-12-03T19:00:00+00:00") == ["north-night (email north-night@example.org)"]
    refused = runner.invoke(app, ["policy", "routes", str(path), "--at", "tonight"])
    assert refused.exit_code == 1
    assert "not an ISO 8601 time" in refused.stderr
