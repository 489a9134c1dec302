"""How `safeguard alerts` words alerts: the queue's columns, one alert's ladder and timeline.

The same wording as the desk's console (services.desk.present): local times in the
deployment's zone with its abbreviation, spans as `6 h 5 min`, the next step as a
sentence. Pure functions of the API's JSON, the time and the zone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from schemas.views import AlertView, NextStep
from services.desk import present

GROUP_KINDS = {"child": "subject_id", "incident": "trigger_id"}


class GroupError(ValueError):
    """A `--group` that names no group."""


@dataclass(frozen=True)
class Group:
    """The alerts a `--group` names: a child's, or those one event (an incident) raised."""

    kind: str
    ident: str

    @classmethod
    def parse(cls, value: str) -> Group:
        """Read `child:C-123` or `incident:<event id>`."""
        kind, _, ident = value.partition(":")
        if kind not in GROUP_KINDS or not ident:
            raise GroupError(
                "--group: say child:<child id> or incident:<id of the event that raised them>"
            )
        return cls(kind, ident)

    def filters(self) -> dict[str, str | None]:
        """Return the list's filters for the group's open alerts."""
        found: dict[str, str | None] = {"status": "open", GROUP_KINDS[self.kind]: self.ident}
        if self.kind == "child":
            found["subject_kind"] = "child"
        return found

    def __str__(self) -> str:
        return f"{self.kind} {self.ident}" if self.kind == "child" else f"event {self.ident}"


def moment(text: str | None) -> datetime | None:
    """Return an API time (ISO 8601), aware."""
    if text is None:
        return None
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def overdue(alert: dict[str, Any], now: datetime) -> str:
    """Return how long overdue, or a pattern alert's age (it has no deadline)."""
    due = moment(alert.get("due_at"))
    if due is None:
        raised = moment(alert["raised_at"])
        return f"no deadline, raised {present.span(now - raised)} ago" if raised else "-"
    return present.span(now - due) if due < now else "not yet"


def next_short(step: dict[str, Any] | None, now: datetime) -> str:
    """Return the next step in a few words: `L2 in 5 min: duty-desk, senior-managers`."""
    if step is None:
        return "top of the ladder"
    parsed = NextStep.model_validate(step)
    when = present.countdown(parsed.at, now)
    who = ", ".join(parsed.recipients)
    if parsed.kind == "level":
        return f"L{parsed.level} {when}: {who}"
    if parsed.kind == "repeat":
        return f"L{parsed.level} again {when}: {who}"
    return f"re-opens {when}"


def queue_rows(alerts: list[dict[str, Any]], now: datetime) -> list[list[object]]:
    """Return `alerts ls`'s rows: what, about whom, how late, what next, where it stands."""
    return [
        [
            a["severity"],
            a["rule"],
            f"{a['subject_kind']}:{a['subject_id']}",
            overdue(a, now),
            next_short(a.get("next_step"), now) if a["status"] != "resolved" else "-",
            a["status"],
            a.get("area"),
            a["alert_id"],
        ]
        for a in alerts
    ]


QUEUE_HEADERS = ["SEVERITY", "RULE", "SUBJECT", "OVERDUE", "NEXT", "STATUS", "AREA", "ALERT"]


def show_lines(record: dict[str, Any], now: datetime, zone: ZoneInfo) -> list[str]:
    """Return one alert as `alerts show` prints it: facts, next step, ladder, timeline."""
    view = AlertView.model_validate(record)
    alert = view.alert
    late = present.lateness(alert.due_at, alert.raised_at, view.resolved_at, now, zone)
    level = f"level {view.level} told" if view.level else "nobody told yet"
    fields: list[tuple[str, str]] = [
        ("alert", alert.alert_id),
        ("status", f"{present.status_label(view)}, {level}"),
        ("rule", alert.rule),
        ("severity", alert.severity.value),
        ("subject", f"{alert.subject_kind.value}:{alert.subject_id}"),
        ("area", alert.area or "-"),
        ("raised", present.when(alert.raised_at, zone).local),
        ("due", present.when(alert.due_at, zone).local if alert.due_at else "no deadline"),
        ("late", late.phrase),
        ("summary", alert.summary),
    ]
    if view.acknowledgement is not None:
        ack = view.acknowledgement
        said = f": {ack.note}" if ack.note else ""
        at = present.when(ack.acknowledged_at, zone).local
        fields.append(("acked", f"by {ack.by} at {at}{said}"))
    ended = present.outcome(view, zone)
    if ended.fulfilled:
        fields.append(("ended", ended.fulfilled))
    if ended.closed:
        note = f" Note: {ended.note}" if ended.note else ""
        fields.append(
            ("ended", f"Closed by hand, not a fulfilment: {ended.closed}. {ended.closed_by}{note}")
        )
    step = present.next_step(view.next_step, now, zone)
    if view.status.value != "resolved":
        fields.append(("next", step.sentence if step else "nothing more: top of the ladder"))
    lines = [f"{name + ':':<10}{value}" for name, value in fields]
    lines += ["", "LADDER"]
    lines += _table(
        ["LEVEL", "REACHES", "DUE", "STATE", "TOLD"],
        [
            [
                str(rung.level),
                ", ".join(rung.recipients),
                rung.due.local if rung.due else "at the raise",
                rung.state,
                "; ".join(
                    f"{t.recipient} by {t.channel} at {t.at.local}: {t.outcome}" for t in rung.told
                )
                or "-",
            ]
            for rung in present.ladder(view, zone)
        ],
    )
    lines += ["", "TIMELINE"]
    lines += _table(
        ["AT", "WHAT", "DETAIL"],
        [[e.at.local, e.what, e.detail or "-"] for e in present.timeline(view, zone)],
    )
    return lines


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [headers, *rows]
    ]
