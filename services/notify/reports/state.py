"""What the timeliness report keeps about one obligation, and how records update it.

One compact record per obligation id (= the id of the alert it raises when breached),
built from two streams that arrive in no particular order relative to each other:

- risk's `obligation.outcome` records (`opened`, `met`, `breached`) on
  `safeguarding.outcomes.v1`;
- notify's `alert.closed` (a person closed the alert by hand) on
  `safeguarding.notifications.v1`.

`merge_outcome` and `merge_closure` are a join: commutative, associative and idempotent
(flags are OR-ed, the fulfilment and the closure keep the earliest time, the description
comes from the record risk wrote last). So the state of an obligation is the same
whatever order its records are applied in, and however often one is applied again
(at-least-once delivery, a replay after a rebalance). No subject id is kept: the report
needs none, and the table is copied to every notify worker.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime

from schemas.outcomes import ObligationOutcome, OutcomeKind

# A closure's reason code is a bounded code (the console's list), shown in reports and CSV:
# anything else (free text would be personal data) is reported as "other".
_REASON = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
UNSPECIFIED = "unspecified"


@dataclass(frozen=True, slots=True)
class ObligationState:
    """The latest known facts of one obligation; times are UTC epoch seconds."""

    rule: str | None = None
    area: str | None = None
    severity: str | None = None
    triggered: float | None = None
    due: float | None = None
    fulfilled: float | None = None
    breached: bool = False
    closed: float | None = None
    reason: str | None = None
    # `at` of the outcome record the description above comes from (the latest wins).
    seen: float | None = None
    # The input partition it is merged on (= its changelog partition): where to forget it.
    partition: int | None = None

    def encode(self) -> bytes:
        """Return the compact JSON kept in the table (defaults left out)."""
        fields = {k: v for k, v in asdict(self).items() if v not in (None, False)}
        return json.dumps(fields, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes) -> ObligationState:
        """Return the state a table value holds."""
        return cls(**json.loads(raw))

    @property
    def known(self) -> bool:
        """Tell whether risk's outcome has arrived (a closure alone has no rule or due time)."""
        return self.rule is not None and self.due is not None and self.triggered is not None


def expired(state: ObligationState, horizon: float) -> bool:
    """Tell whether a finished obligation's last date is before `horizon` (epoch seconds).

    Finished: fulfilled, or closed by hand (a closure alone, of an alert that is not an
    obligation's, included). An obligation still open is never forgotten.
    """
    if state.fulfilled is None and state.closed is None:
        return False
    last = max(t for t in (state.due, state.fulfilled, state.closed) if t is not None)
    return last < horizon


def _ts(value: datetime) -> float:
    return value.astimezone(UTC).timestamp()


def _earliest(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def merge_outcome(state: ObligationState | None, outcome: ObligationOutcome) -> ObligationState:
    """Return `state` with one of risk's outcome records applied."""
    state = state or ObligationState()
    at = _ts(outcome.at)
    # The description (rule, area, due time...) is taken from the record written last, so
    # the order of arrival does not matter; ties keep the one already there.
    newer = state.seen is None or at > state.seen
    if newer:
        state = replace(
            state,
            rule=outcome.rule,
            area=outcome.area,
            severity=outcome.severity.value,
            triggered=_ts(outcome.triggered_at),
            due=_ts(outcome.due_at),
            seen=at,
        )
    if outcome.outcome is OutcomeKind.BREACHED:
        state = replace(state, breached=True)
    if outcome.outcome is OutcomeKind.MET and outcome.fulfilled_at is not None:
        state = replace(state, fulfilled=_earliest(state.fulfilled, _ts(outcome.fulfilled_at)))
    return state


def reason_code(reason: object) -> str:
    """Return the closure's reason as a bounded code: its value, `unspecified` or `other`."""
    if reason is None:
        return UNSPECIFIED
    text = str(getattr(reason, "value", reason))
    return text if _REASON.fullmatch(text) else "other"


def merge_closure(
    state: ObligationState | None, closed_at: datetime, reason: object
) -> ObligationState:
    """Return `state` with a closure by hand applied: the earliest closure and its reason win."""
    state = state or ObligationState()
    at = _ts(closed_at)
    if state.closed is not None and (state.closed, state.reason or "") <= (at, reason_code(reason)):
        return state
    return replace(state, closed=at, reason=reason_code(reason))
