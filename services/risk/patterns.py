"""Pattern rules (docs/contract.md section 3): raised when a pattern completes, with no deadline."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from schemas.alerts import Severity
from services.risk.policy import RepeatPattern
from services.risk.state import Ref


@dataclass(frozen=True)
class PatternHit:
    """A completed pattern: what completed it and when."""

    rule: str
    scope: str
    at: datetime
    severity: Severity
    summary: str
    trigger: Ref | None = None


def repeats(
    rule: str,
    occurrences: Iterable[tuple[datetime, str]],
    pattern: RepeatPattern,
    already: Iterable[datetime],
    what: str,
) -> list[PatternHit]:
    """Find each completion of `count` occurrences within `within` (by event time).

    A burst raises once: a completion within `within` of one already raised is part of
    the same pattern, so later arrivals, in any order, add nothing.
    """
    ordered = sorted(occurrences)
    raised = sorted(already)
    hits: list[PatternHit] = []
    n = pattern.count
    for i in range(n - 1, len(ordered)):
        at, scope = ordered[i]
        if at - ordered[i - n + 1][0] > pattern.within:
            continue
        if any(abs(at - other) <= pattern.within for other in raised):
            continue
        raised.append(at)
        hits.append(
            PatternHit(
                rule=rule,
                scope=scope,
                at=at,
                severity=pattern.severity,
                summary=f"{n} {what} within {pattern.within.days} days",
            )
        )
    return hits
