"""Per-subject state kept in the risk service's table: what it has seen and what it owes.

A subject is a child, an offender or an enquiry; its key is `kind:id`. Only the
collections a subject's kind uses are filled; empty ones and fields at their defaults
are left out of the stored JSON to keep each entry small.

The states are msgspec structs: decoding and encoding a subject is most of what a
deadline costs, and msgspec does both several times faster than validating models. The
JSON is the same as the pydantic models of earlier releases wrote, so their table
values are read as they are (tests/fixtures/compat).
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from schemas.alerts import Severity
from schemas.events import (
    ConcernLevel,
    IncidentCategory,
    MissingRiskGrade,
    OffenderManagement,
    OffenderRiskLevel,
)
from services.risk.keys import ObligationKey, SubjectKey, SubjectKind
from services.risk.policy import RiskLevel

# The format of the table's values this release writes; it reads this one and the one
# before (0: the pydantic models' JSON, the same fields).
TABLE_VERSION = 1


class Ref(msgspec.Struct, frozen=True):
    """An event by its idempotency key `(source, id)`."""

    source: str
    id: str


class Obligation(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Something that must happen for a subject by `due_at`.

    `scope` is what the obligation is per (the incident id...), `match` the key of the
    facts that fulfil it, `check_at` when the clock checks it (`due_at`, or a moment
    after arrival if it arrived overdue), `not_before` a time a fulfilling fact must be
    at or after. `alert_id` is the id its alert has (or would have), computed once.
    `requires`: what a referral must hold to fulfil it (referral rules).
    `fulfilment_recorded_at`: when the fulfilment reached risk. `transfer_requested_at`
    and `transfer_refused_at`: a child in custody's accommodation, for the report.
    """

    rule: str
    scope: str
    match: str
    trigger: Ref
    triggered_at: datetime
    due_at: datetime
    check_at: datetime
    severity: Severity
    area: str | None = None
    summary: str
    not_before: datetime | None = None
    strictly_after: bool = False
    fulfilled_at: datetime | None = None
    fulfilment: Ref | None = None
    raised: bool = False
    resolved: bool = False
    alert_id: str | None = None
    requires: list[str] | None = None
    fulfilment_recorded_at: datetime | None = None
    transfer_requested_at: datetime | None = None
    transfer_refused_at: datetime | None = None

    @property
    def key(self) -> str:
        """Return the obligation's identity within its subject."""
        return str(ObligationKey(self.rule, self.scope))

    @property
    def pending(self) -> bool:
        """Tell whether the clock still has to be watched for this obligation."""
        return not self.raised and self.fulfilled_at is None

    @property
    def breached(self) -> bool:
        """Tell whether the obligation was (or is being) missed."""
        return self.raised

    def accepts(self, at: datetime) -> bool:
        """Tell whether a fact at `at` can fulfil this obligation."""
        if self.not_before is None:
            return True
        return at > self.not_before if self.strictly_after else at >= self.not_before


class Fact(msgspec.Struct, frozen=True, omit_defaults=True):
    """An event that can fulfil obligations, kept even before any obligation exists.

    `recorded_at`: when it reached risk; `referral`: the referral it shares, whose
    contents (with its supplements) decide whether it is complete.
    """

    at: datetime
    ref: Ref
    recorded_at: datetime | None = None
    referral: str | None = None


class Supplement(msgspec.Struct, frozen=True, omit_defaults=True):
    """Contents a referral carried, or more added to it later, and when."""

    at: datetime
    contents: list[str]
    recorded_at: datetime | None = None


class Referral(msgspec.Struct, omit_defaults=True):
    """A referral to children's social care or the MASH: its contents and supplements.

    `at` is None while only supplements naming it are known; `sent` is what the referral
    itself held, `parts` that and every supplement. `alerted`: its `referral-incomplete`
    alert was raised.
    """

    at: datetime | None = None
    sent: list[str] | None = None
    incident: str | None = None
    area: str | None = None
    ref: Ref | None = None
    parts: list[Supplement] = msgspec.field(default_factory=list)
    alerted: bool = False


class Refusal(msgspec.Struct, frozen=True, omit_defaults=True):
    """An event whose source may not fulfil a rule: kept, fulfilling nothing."""

    rule: str
    source: str
    at: datetime
    recorded_at: datetime
    area: str | None = None


class Transfer(msgspec.Struct, omit_defaults=True):
    """A child in custody's local-authority accommodation: first request and refusal."""

    requested_at: datetime | None = None
    refused_at: datetime | None = None


class Incident(msgspec.Struct, omit_defaults=True):
    """An incident a child was involved in (for scoring and patterns)."""

    at: datetime
    category: IncidentCategory
    present: bool
    area: str | None = None


class Episode(msgspec.Struct, omit_defaults=True):
    """A missing episode (for scoring and patterns); `grade` the strictest it was given."""

    at: datetime
    grade: MissingRiskGrade
    area: str | None = None
    ref: Ref | None = None


class Concern(msgspec.Struct, omit_defaults=True):
    """An exploitation concern (for scoring) at the level it was raised with."""

    at: datetime
    level: ConcernLevel
    area: str | None = None
    ref: Ref | None = None


class LevelChange(msgspec.Struct, omit_defaults=True):
    """An offender's risk level from a registration or an assessment (`assessed`).

    An assessment restarts the visit cycle. `management`: reactive offenders owe no
    routine cadence.
    """

    at: datetime
    level: OffenderRiskLevel
    ref: Ref
    assessed: bool
    management: OffenderManagement = OffenderManagement.ACTIVE
    area: str | None = None


class Visit(msgspec.Struct, omit_defaults=True):
    """An offender visit that saw the offender (a no-access visit is not one)."""

    at: datetime
    ref: Ref
    area: str | None = None


class RecentEvent(msgspec.Struct, omit_defaults=True):
    """An event's type, time and area, for the child view (no content)."""

    type: str
    at: datetime
    area: str | None = None


class PatternAlert(msgspec.Struct, omit_defaults=True):
    """A pattern alert already raised, so one pattern (or burst) raises once."""

    rule: str
    scope: str
    at: datetime


class SubjectState(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Everything the risk service remembers about one subject.

    `partition` is the partition that owns it (to rebuild the schedule), `revision` how
    many times it was written (it orders the child's views), `seen` the `source|id` of
    the events processed with their event times.
    """

    kind: SubjectKind
    id: str
    # The table value's format: 0 for values written before formats were numbered.
    version: int = 0
    partition: int | None = None
    revision: int = 0
    seen: dict[str, datetime] = msgspec.field(default_factory=dict)
    obligations: dict[str, Obligation] = msgspec.field(default_factory=dict)
    facts: dict[str, list[Fact]] = msgspec.field(default_factory=dict)
    recent: list[RecentEvent] = msgspec.field(default_factory=list)
    # Child history.
    age: int | None = None
    incidents: dict[str, Incident] = msgspec.field(default_factory=dict)
    episodes: dict[str, Episode] = msgspec.field(default_factory=dict)
    concerns: dict[str, Concern] = msgspec.field(default_factory=dict)
    detentions: dict[str, datetime] = msgspec.field(default_factory=dict)
    detention_areas: dict[str, str] = msgspec.field(default_factory=dict)
    patterns: list[PatternAlert] = msgspec.field(default_factory=list)
    level: RiskLevel = RiskLevel.LOW
    referrals: dict[str, Referral] = msgspec.field(default_factory=dict)
    transfers: dict[str, Transfer] = msgspec.field(default_factory=dict)
    refused: list[Refusal] = msgspec.field(default_factory=list)
    # Offender history.
    levels: list[LevelChange] = msgspec.field(default_factory=list)
    visits: list[Visit] = msgspec.field(default_factory=list)
    # The offender's manager (a staff id) by the latest `offender.manager_assigned`, kept
    # for what the rules may come to need; caseloads are the desk's (docs/design.md).
    manager: str | None = None
    manager_since: datetime | None = None

    @property
    def key(self) -> str:
        """Return the table key of this subject."""
        return str(SubjectKey(self.kind, self.id))

    def next_due(self) -> datetime | None:
        """Return the earliest deadline still being watched, if any."""
        return min((o.check_at for o in self.obligations.values() if o.pending), default=None)

    def to_json(self) -> bytes:
        """Serialise compactly for the table, in this release's format."""
        self.version = TABLE_VERSION
        return _ENCODER.encode(self)

    @classmethod
    def from_json(cls, raw: bytes) -> SubjectState:
        """Load from the table."""
        return _DECODER.decode(raw)


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(SubjectState)
