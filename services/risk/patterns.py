"""Pattern rules (docs/contract.md section 3): raised when a pattern completes, with no deadline.

Repeat patterns raise once per **burst**, and bursts are canonical: a function of the
set of occurrence times, never of the order they arrived in. From the occurrences sorted
by time, an occurrence *completes* the pattern when it and the `count - 1` occurrences
before it span at most `within`. Time is cut into consecutive periods of `within`
counted from 1970-01-01T00:00Z; a burst is the completions that fall in one period, and
raises one alert, whose id names the period.

Why periods and not "within `within` of the first completion": more occurrences only
ever add completions, so a completion once seen stays one, and its period never
changes. A burst measured from its first completion moves when an earlier occurrence
arrives late, and an alert already raised cannot be taken back: two orders of the same
events would then raise different alerts. The cost is that a run of completions across
a period's end raises twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from schemas.alerts import Severity
from services.risk.policy import RepeatPattern
from services.risk.state import Ref

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, order=True)
class Occurrence:
    """One occurrence of a repeat pattern: when, its id (the alert's scope), where."""

    at: datetime
    scope: str
    area: str | None = None


@dataclass(frozen=True)
class PatternHit:
    """A completed pattern: what completed it and when."""

    rule: str
    scope: str
    at: datetime
    severity: Severity
    summary: str
    trigger: Ref | None = None
    area: str | None = None
    start_level: int | None = None


def period(at: datetime, pattern: RepeatPattern) -> datetime:
    """Return the start of the period of `within` that `at` falls in."""
    return EPOCH + pattern.within * ((at - EPOCH) // pattern.within)


def bursts(occurrences: Iterable[Occurrence], pattern: RepeatPattern) -> list[Occurrence]:
    """Return the first completion of each burst (one per period), earliest first."""
    ordered = sorted(occurrences)
    n = pattern.count
    firsts: dict[datetime, Occurrence] = {}
    for i in range(n - 1, len(ordered)):
        current = ordered[i]
        if current.at - ordered[i - n + 1].at <= pattern.within:
            firsts.setdefault(period(current.at, pattern), current)
    return list(firsts.values())


def repeats(
    rule: str,
    occurrences: Iterable[Occurrence],
    pattern: RepeatPattern,
    already: Iterable[datetime],
    what: str,
) -> list[PatternHit]:
    """Return a hit for each burst whose period no alert already raised (at `already`) is in."""
    raised = {period(at, pattern) for at in already}
    hits: list[PatternHit] = []
    for first in bursts(occurrences, pattern):
        start = period(first.at, pattern)
        if start in raised:
            continue
        raised.add(start)
        hits.append(
            PatternHit(
                rule=rule,
                scope=f"period|{start.isoformat()}",
                at=first.at,
                severity=pattern.severity,
                summary=f"{pattern.count} {what} within {pattern.within.days} days",
                area=first.area,
            )
        )
    return hits
