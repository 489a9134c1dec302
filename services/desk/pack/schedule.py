"""Scheduled sends: the weekly digest and the monthly pack, once each, late but never lost.

Every desk pod runs the same loop; the database makes it one send:

1. **Due rows.** Each period that fell due (local time in the policy's zone: the digest
   of a week on the policy's weekday after it, the pack of a month on the policy's day
   of the next) gets one row per area in `scheduled_sends`, keyed by (kind, period,
   area): inserting it twice is a no-op. Periods due before the schedule began (its
   `schedule_epochs` row, written once) are never sent: a new deployment does not mail
   three months of packs at once. The last few periods are looked at each time, so a
   desk that was down when one fell due sends it when it is back.
2. **A lease.** A pod takes one due row (`FOR UPDATE SKIP LOCKED`), sets a lease and
   counts the attempt in a short transaction, then sends outside it. Another pod skips
   a leased row; a pod that dies mid-send leaves a lease that runs out, and the row is
   taken again (the mail may then go twice: late, never lost).
3. **The outcome.** Sent: the row says so (`sent_at`, the figures' SHA-256 for a pack).
   Failed: the error's code and the next attempt, with backoff, are written, the
   failure counted (`safeguard_desk_scheduled_sends_total{outcome="failed"}`), and the
   row stays due; `safeguard_desk_scheduled_sends_overdue` makes the alert
   (SafeguardScheduledSendOverdue). An area the policy routes to nobody by email is a
   failure too (`no_recipients`), never a silent skip.

Figures are as of the moment the send fell due, so a retried pack carries the same
figures, and the same SHA-256, as the first attempt would have.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert

from services.common import smtp
from services.common.auth import Principal, Role
from services.desk.pack import digest as digests
from services.desk.pack.period import Period, month_of, week_of
from services.desk.pack.policy import WEEKDAYS
from services.desk.schema import obligations, schedule_epochs, scheduled_sends

log = structlog.get_logger(__name__)
# An instance of its own: the module-level generator is the test framework's to seed.
JITTER = random.Random()  # noqa: S311 - jitter, not security

KINDS = ("digest", "pack")
LOOKBACK = 3  # periods looked at behind the latest due one
SYSTEM = "desk-scheduler"


@dataclass(frozen=True)
class Due:
    """A period whose send fell due at `at`."""

    period: Period
    at: datetime


def due_periods(kind: str, assurance: Any, zone: ZoneInfo, now: datetime) -> list[Due]:  # noqa: ANN401 - the Assurance policy
    """Return the periods of `kind` whose send is due by `now`, newest last."""
    found: list[Due] = []
    if kind == "digest":
        schedule = assurance.digest
        week = week_of(now).previous()
        for _ in range(LOOKBACK + 2):
            day = week.end.date() + timedelta(days=WEEKDAYS.index(schedule.weekday))
            at = datetime.combine(day, schedule.at, zone).astimezone(UTC)
            if at <= now:
                found.append(Due(week, at))
            week = week.previous()
    else:
        schedule = assurance.pack
        month = month_of(now).previous()
        for _ in range(LOOKBACK + 2):
            day = month.end.date().replace(day=schedule.day)
            at = datetime.combine(day, schedule.at, zone).astimezone(UTC)
            if at <= now:
                found.append(Due(month, at))
            month = month.previous()
    return sorted(found, key=lambda d: d.at)[-(LOOKBACK + 1) :]


class Scheduler:
    """Enqueues due sends and makes them, from any desk pod."""

    def __init__(self, desk: Any) -> None:  # noqa: ANN401 - the Desk (circular import)
        self.desk = desk
        self.settings = desk.settings.schedule

    async def tick(self) -> None:
        """Enqueue what fell due, then send every due row this pod can take."""
        now = self.desk.clock.now()
        for kind in KINDS:
            await self._enqueue(kind, now)
        while await self._send_one(now):
            now = self.desk.clock.now()

    async def _enqueue(self, kind: str, now: datetime) -> None:
        policy = self.desk.assurance
        zone = ZoneInfo(policy.timezone())
        async with self.desk.database.write() as connection:
            await connection.execute(
                insert(schedule_epochs).on_conflict_do_nothing(), {"kind": kind, "started_at": now}
            )
            epoch = (
                await connection.execute(
                    select(schedule_epochs.c.started_at).where(schedule_epochs.c.kind == kind)
                )
            ).scalar_one()
            due = [d for d in due_periods(kind, policy.assurance, zone, now) if d.at >= epoch]
            for item in due:
                s = scheduled_sends.c
                known = await connection.execute(
                    select(func.count()).where(s.kind == kind, s.period == item.period.label)
                )
                if known.scalar_one():
                    continue
                areas = await self._areas(connection)
                if not areas:
                    continue
                await connection.execute(
                    insert(scheduled_sends).on_conflict_do_nothing(),
                    [
                        {
                            "kind": kind,
                            "period": item.period.label,
                            "area": area,
                            "due_at": item.at,
                            "status": "pending",
                            "attempts": 0,
                            "next_attempt_at": item.at,
                        }
                        for area in areas
                    ],
                )
                log.info(
                    "scheduled_send_due", kind=kind, period=item.period.label, areas=len(areas)
                )

    async def _areas(self, connection: Any) -> list[str]:  # noqa: ANN401 - an AsyncConnection
        found = await connection.execute(
            select(obligations.c.area).where(obligations.c.area.is_not(None)).distinct()
        )
        return sorted({*self.desk.assurance.areas(), *(row[0] for row in found)})

    async def _send_one(self, now: datetime) -> bool:
        s = scheduled_sends.c
        lease = now + timedelta(seconds=self.settings.lease_seconds)
        async with self.desk.database.write() as connection:
            chosen = (
                select(s.kind, s.period, s.area)
                .where(
                    s.status != "sent",
                    s.next_attempt_at <= now,
                    or_(s.leased_until.is_(None), s.leased_until < now),
                )
                .order_by(s.due_at, s.kind, s.area)
                .limit(1)
                .with_for_update(skip_locked=True)
                .subquery()
            )
            row = (
                await connection.execute(
                    update(scheduled_sends)
                    .where(
                        and_(
                            s.kind == chosen.c.kind,
                            s.period == chosen.c.period,
                            s.area == chosen.c.area,
                        )
                    )
                    .values(leased_until=lease, attempts=s.attempts + 1)
                    .returning(s.kind, s.period, s.area, s.due_at, s.attempts)
                )
            ).first()
        if row is None:
            return False
        kind, period, area, due_at, attempts = row
        try:
            outcome, sha = await self._deliver(kind, period, area, due_at)
        except Exception as error:  # noqa: BLE001 - any fault is a failed attempt, retried
            outcome, sha = (
                smtp.Sent(ok=False, failure="connection_error", detail=type(error).__name__),
                None,
            )
        await self._record(kind, period, area, attempts, outcome, sha)
        return True

    async def _deliver(
        self, kind: str, period: str, area: str, due_at: datetime
    ) -> tuple[smtp.Sent, str | None]:
        desk = self.desk
        policy = desk.assurance
        schedule = policy.assurance.digest if kind == "digest" else policy.assurance.pack
        to = policy.recipients(schedule.route, area)
        if not to:
            return smtp.Sent(
                ok=False, permanent=False, failure="misconfigured", detail="no_recipients"
            ), None
        sender = desk.settings.smtp.sender
        if kind == "digest":
            from services.desk.pack.period import parse_period  # noqa: PLC0415

            week = parse_period(period)
            async with desk.database.read() as connection:
                made = await digests.build(connection, week, area, due_at, policy.assurance)
            labels = [w.label for w in [*week.history(digests.WEEKS), week]]
            mail = digests.message(made, labels, sender, to)
            sha = None
        else:
            mail, sha = await self._pack_mail(period, area, due_at, sender, to)
        sent = await asyncio.to_thread(
            smtp.send, desk.settings.smtp, mail, desk.settings.smtp.timeout_seconds
        )
        return sent, sha

    async def _pack_mail(
        self, period: str, area: str, as_of: datetime, sender: str, to: list[str]
    ) -> tuple[EmailMessage, str]:
        from services.desk.pack.period import parse_period  # noqa: PLC0415

        system = Principal(
            name=SYSTEM, sources=(), roles=frozenset({Role.LEAD}), areas=frozenset({area})
        )
        made = await self.desk.packs.make(system, parse_period(period), area, as_of)
        pdf = await asyncio.to_thread(made.pdf)
        mail = EmailMessage()
        mail["Subject"] = f"[Safeguard] Assurance pack {area}, {period}"
        mail["From"] = sender
        mail["To"] = ", ".join(to)
        mail.set_content(
            f"The assurance pack of {area} for {period} is attached (PDF), with its figures "
            f"(JSON).\nSHA-256 of the figures: {made.sha256}\n"
        )
        mail.add_attachment(pdf, maintype="application", subtype="pdf", filename=f"{made.name}.pdf")
        mail.add_attachment(
            made.figures_bytes, maintype="application", subtype="json", filename=made.json_name
        )
        return mail, made.sha256

    async def _record(  # noqa: PLR0913, PLR0917 - the row's key, the attempt, its outcome
        self, kind: str, period: str, area: str, attempts: int, sent: smtp.Sent, sha: str | None
    ) -> None:
        desk = self.desk
        now = desk.clock.now()
        s = scheduled_sends.c
        key = and_(s.kind == kind, s.period == period, s.area == area)
        if sent.ok:
            values: dict[str, Any] = {
                "status": "sent",
                "sent_at": now,
                "leased_until": None,
                "last_error": None,
                "figures_sha256": sha,
            }
            log.info("scheduled_send_sent", kind=kind, period=period, area=area, attempts=attempts)
        else:
            delay = min(
                self.settings.retry_max_seconds,
                self.settings.retry_initial_seconds * 2 ** max(0, attempts - 1),
            ) * (0.75 + JITTER.random() / 2)
            values = {
                "status": "failed",
                "leased_until": None,
                "last_error": sent.detail or sent.failure,
                "next_attempt_at": now + timedelta(seconds=delay),
            }
            log.warning(
                "scheduled_send_failed",
                kind=kind,
                period=period,
                area=area,
                attempts=attempts,
                error=sent.detail or sent.failure,
            )
        desk.metrics.scheduled.labels(kind=kind, outcome="sent" if sent.ok else "failed").inc()
        async with desk.database.write() as connection:
            await connection.execute(update(scheduled_sends).where(key).values(**values))
