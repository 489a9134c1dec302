"""The timeliness report: a pure function of obligation states, a period and filters.

The states come from the projected `obligations` table (services.desk.reports), one per
obligation; each is classified by the one classifier the services share
(`services.common.timeliness.classify`).

For the obligations *due* in the period (`from` <= due < `to`, UTC), per rule and area,
per month of the due time, per rule, and in total:

- `due`: obligations due in the period and judged by now (due already, or met early);
  those still open with time left are `not_yet_due` and in no other figure;
- `met_on_time` (fulfilled at or before the due time), `met_recorded_late` (on time as
  claimed, but recorded after the deadline and more than the policy's tolerance after
  the time it claims: a backdated record, never counted as on time), `met_late`,
  `open_overdue` (nothing yet, past due), `closed_by_hand` (a person closed the alert
  without the fulfilling event; by reason code): these five add up to `due`. A
  fulfilment wins over a closure by hand: it is the fact the rule asked for;
- `on_time_percent`: `met_on_time / due`. A closure by hand is never on time: an alert
  is only raised once the deadline has passed;
- `lateness_median_seconds`, `lateness_p90_seconds`: how far past the due time, over
  the met and the still open (on time counts 0; an open one is as late as it is now),
  nearest-rank percentiles, so each is a lateness some obligation actually had;
- the inspector's sentence, "4 of 10 over 25 days": of the met and open-overdue
  obligations (`measured`), how many took longer than `over` from their trigger to
  their fulfilment (or to now, still open). That is what the inspectors counted: the
  delay between the incident and the referral. Closures by hand are left out of it:
  their delay is not known;
- `transfers` (groups holding `child-in-custody` obligations, due in the period whether
  judged yet or not): local-authority accommodation `requested`, `made` (the obligation
  met) and `refused`, as the Concordat on Children in Custody asks forces to count.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from services.common.csv_cells import safe_row
from services.common.durations import format_duration
from services.common.timeliness import Timeliness, classify

NO_AREA = ""  # an obligation without an area (shown as "(none)")
CUSTODY = "child-in-custody"


@dataclass(frozen=True, slots=True)
class ObligationState:
    """One obligation as the report counts it; times are UTC epoch seconds."""

    rule: str | None = None
    area: str | None = None
    triggered: float | None = None
    due: float | None = None
    fulfilled: float | None = None
    closed: float | None = None
    reason: str | None = None
    recorded_late: bool = False
    transfer_requested: bool = False
    transfer_refused: bool = False

    @property
    def known(self) -> bool:
        """Tell whether risk's outcome has arrived (a closure alone has no rule or due time)."""
        return self.rule is not None and self.due is not None and self.triggered is not None


# The lateness distribution's buckets (upper bounds in seconds), for the chart.
LATENESS_BUCKETS: tuple[tuple[str, float], ...] = (
    ("on time", 0),
    ("up to 1 h", 3600),
    ("1 h to 1 d", 86400),
    ("1 to 7 d", 7 * 86400),
    ("7 to 25 d", 25 * 86400),
    ("over 25 d", math.inf),
)


@dataclass(frozen=True)
class Query:
    """What the report covers: due times in [start, end), optional rule and area, `over`."""

    start: datetime
    end: datetime
    over: timedelta
    rule: str | None = None
    area: str | None = None


@dataclass
class Figures:
    """The report's figures for one group of obligations."""

    due: int = 0
    met_on_time: int = 0
    met_recorded_late: int = 0
    met_late: int = 0
    open_overdue: int = 0
    closed_by_hand: int = 0
    not_yet_due: int = 0
    custody: bool = False
    transfers_requested: int = 0
    transfers_made: int = 0
    transfers_refused: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    lateness: list[float] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)

    def over(self, threshold: timedelta) -> int:
        """Return how many measured obligations took longer than `threshold`."""
        limit = threshold.total_seconds()
        return sum(1 for d in self.delays if d > limit)

    @property
    def on_time_percent(self) -> float | None:
        """Return the share of obligations due that were met on time, None when none were."""
        return round(100.0 * self.met_on_time / self.due, 1) if self.due else None

    def to_json(self, over: timedelta) -> dict[str, Any]:
        """Return the figures as the API gives them."""
        n = self.over(over)
        body: dict[str, Any] = {
            "due": self.due,
            "met_on_time": self.met_on_time,
            "met_recorded_late": self.met_recorded_late,
            "met_late": self.met_late,
            "open_overdue": self.open_overdue,
            "closed_by_hand": self.closed_by_hand,
            "closed_by_hand_by_reason": dict(sorted(self.reasons.items())),
            "not_yet_due": self.not_yet_due,
            "on_time_percent": self.on_time_percent,
            "lateness_median_seconds": _whole(percentile(self.lateness, 50)),
            "lateness_p90_seconds": _whole(percentile(self.lateness, 90)),
            "over": n,
            "measured": len(self.delays),
            "sentence": sentence(n, len(self.delays), over),
        }
        if self.custody:
            body["transfers"] = {
                "requested": self.transfers_requested,
                "made": self.transfers_made,
                "refused": self.transfers_refused,
            }
        return body


def percentile(values: list[float], p: float) -> float | None:
    """Return the nearest-rank `p`th percentile of `values` (None for none)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def readable(seconds: float | None, none: str = "-") -> str:
    """Return a lateness for people: `0`, `25 min`, `7.5 h`, `31.2 d` (None: `none`)."""
    if seconds is None:
        return none
    if seconds <= 0:
        return "0"
    if seconds < 3600:  # noqa: PLR2004 - an hour
        return f"{max(1, round(seconds / 60))} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _whole(seconds: float | None) -> int | None:
    # Whole seconds: an open obligation's lateness is measured to the microsecond of `now`.
    return None if seconds is None else round(seconds)


def sentence(n: int, m: int, over: timedelta) -> str:
    """Return the inspector's sentence: "4 of 10 over 25 days"."""
    days = over.total_seconds() / 86400
    if days >= 1 and days == int(days):
        span = f"{int(days)} day" + ("" if days == 1 else "s")
    else:
        span = format_duration(over)
    return f"{n} of {m} over {span}"


@dataclass
class Report:
    """The figures per (rule, area), per (month, rule, area), per rule and in total."""

    query: Query
    generated_at: datetime
    rows: dict[tuple[str, str], Figures] = field(default_factory=dict)
    months: dict[tuple[str, str, str], Figures] = field(default_factory=dict)
    rules: dict[str, Figures] = field(default_factory=dict)
    total: Figures = field(default_factory=Figures)
    distribution: dict[str, Counter[str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Return the report as the API's JSON body."""
        q, over = self.query, self.query.over
        return {
            "from": _iso(q.start),
            "to": _iso(q.end),
            "over": format_duration(over),
            "over_seconds": over.total_seconds(),
            "rule": q.rule,
            "area": q.area,
            "generated_at": _iso(self.generated_at),
            "rows": [
                {"rule": rule, "area": area or None, **f.to_json(over)}
                for (rule, area), f in sorted(self.rows.items())
            ],
            "months": [
                {"month": month, "rule": rule, "area": area or None, **f.to_json(over)}
                for (month, rule, area), f in sorted(self.months.items())
            ],
            "rules": [{"rule": rule, **f.to_json(over)} for rule, f in sorted(self.rules.items())],
            "total": self.total.to_json(over),
            "lateness_distribution": {
                rule: [{"bucket": name, "count": counts[name]} for name, _ in LATENESS_BUCKETS]
                for rule, counts in sorted(self.distribution.items())
            },
        }


CSV_COLUMNS = (
    "period",
    "rule",
    "area",
    "due",
    "met_on_time",
    "met_recorded_late",
    "met_late",
    "open_overdue",
    "closed_by_hand",
    "closed_by_hand_by_reason",
    "not_yet_due",
    "on_time_percent",
    "lateness_median_seconds",
    "lateness_p90_seconds",
    "over",
    "measured",
    "sentence",
    "transfers_requested",
    "transfers_made",
    "transfers_refused",
)


def to_csv(report: Report) -> str:
    """Return the report as CSV: the whole period per rule and area, then each month."""
    body = report.to_json()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    period = f"{body['from']}/{body['to']}"
    lines = [(period, row) for row in body["rows"]] + [(m["month"], m) for m in body["months"]]
    for when, row in lines:
        reasons = ";".join(f"{k}={v}" for k, v in row["closed_by_hand_by_reason"].items())
        transfers = row.get("transfers") or {}
        values = {
            **row,
            "period": when,
            "area": row["area"] or "",
            "closed_by_hand_by_reason": reasons,
            "transfers_requested": transfers.get("requested"),
            "transfers_made": transfers.get("made"),
            "transfers_refused": transfers.get("refused"),
        }
        writer.writerow(safe_row(["" if values[c] is None else values[c] for c in CSV_COLUMNS]))
    return out.getvalue()


def timeliness(
    states: Iterable[ObligationState],
    query: Query,
    now: datetime,
    visible: Callable[[str | None], bool] = lambda _area: True,
) -> Report:
    """Return the report of the obligations in `states` that `query` and `visible` select."""
    report = Report(query=query, generated_at=now)
    start, end, clock = query.start.timestamp(), query.end.timestamp(), now.timestamp()
    # A large force has about a million obligations a year: the groups are looked up and
    # the month named once per (rule, area) and per day, not once per obligation.
    groups_of: dict[tuple[str, str, int], list[Figures]] = {}
    seen_areas: dict[str | None, bool] = {}
    for state in states:
        if not state.known or not start <= (state.due or 0) < end:
            continue
        rule, area = state.rule or "", state.area
        if query.rule is not None and rule != query.rule:
            continue
        if query.area is not None and area != query.area:
            continue
        allowed = seen_areas.get(area)
        if allowed is None:
            allowed = seen_areas[area] = visible(area)
        if not allowed:
            continue
        day = int((state.due or 0) // 86400)
        groups = groups_of.get((rule, area or NO_AREA, day))
        if groups is None:
            groups = groups_of[rule, area or NO_AREA, day] = _groups(report, rule, area, day)
        lateness = _count(state, clock, groups)
        if lateness is not None:
            counts = report.distribution.get(rule)
            if counts is None:
                counts = report.distribution[rule] = Counter()
            counts[_bucket(lateness)] += 1
    return report


def _groups(report: Report, rule: str, area: str | None, day: int) -> list[Figures]:
    """Return the four groups an obligation of `rule` and `area` due on `day` counts in."""
    month = datetime.fromtimestamp(day * 86400, UTC).strftime("%Y-%m")
    where = area or NO_AREA
    return [
        report.rows.setdefault((rule, where), Figures()),
        report.months.setdefault((month, rule, where), Figures()),
        report.rules.setdefault(rule, Figures()),
        report.total,
    ]


def _count(state: ObligationState, now: float, groups: list[Figures]) -> float | None:
    """Add one obligation to each group; return its lateness when it has one."""
    due, triggered = state.due or 0.0, state.triggered or 0.0
    if state.rule == CUSTODY:
        _transfers(state, groups)
    judged = classify(
        due,
        state.fulfilled,
        now,
        closed_by_hand=state.closed is not None,
        recorded_late=state.recorded_late,
    )
    if judged is Timeliness.NOT_YET_DUE:
        for f in groups:
            f.not_yet_due += 1
        return None
    if judged is Timeliness.CLOSED_BY_HAND:
        for f in groups:
            f.due += 1
            f.closed_by_hand += 1
            f.reasons[state.reason or "unspecified"] += 1
        return None
    # Met (on time, recorded late or late), or still open past its due time: each has a
    # lateness past the due time as the fulfilment claims it (0 when on time).
    end = state.fulfilled if state.fulfilled is not None else now
    lateness, delay = max(0.0, end - due), end - triggered
    figure = judged.value
    for f in groups:
        f.due += 1
        setattr(f, figure, getattr(f, figure) + 1)
        f.lateness.append(lateness)
        f.delays.append(delay)
    return lateness


def _transfers(state: ObligationState, groups: list[Figures]) -> None:
    """Count a custody's transfer requested, made and refused in each group."""
    for f in groups:
        f.custody = True
        f.transfers_requested += state.transfer_requested
        f.transfers_made += state.fulfilled is not None
        f.transfers_refused += state.transfer_refused


def _bucket(lateness: float) -> str:
    for name, bound in LATENESS_BUCKETS:
        if lateness <= bound:
            return name
    return LATENESS_BUCKETS[-1][0]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
