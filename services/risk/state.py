"""Per-subject state kept in the risk service's table: what it has seen and what it owes.

A subject is a child, an offender or an enquiry; its key is `kind:id`. Only the
collections a subject's kind uses are filled; empty ones are left out of the stored JSON
to keep each entry small.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, Field

from schemas.alerts import EventRef, Severity
from schemas.events import ConcernLevel, IncidentCategory, MissingRiskGrade, OffenderRiskLevel
from services.risk.keys import ObligationKey, SubjectKey, SubjectKind
from services.risk.policy import RiskLevel


class Obligation(BaseModel):
    """Something that must happen for a subject by `due_at`."""

    rule: str
    scope: str = Field(description="what the obligation is per, e.g. the incident id")
    match: str = Field(description="key of the facts that fulfil it")
    trigger: EventRef
    triggered_at: AwareDatetime
    due_at: AwareDatetime
    check_at: AwareDatetime = Field(
        description="when the clock checks it: due_at, or a moment after arrival if overdue"
    )
    severity: Severity
    area: str | None = None
    summary: str
    not_before: AwareDatetime | None = Field(
        default=None, description="a fulfilling fact must be at or after this time"
    )
    strictly_after: bool = False
    fulfilled_at: AwareDatetime | None = None
    fulfilment: EventRef | None = None
    raised: bool = False
    resolved: bool = False

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


class Fact(BaseModel):
    """An event that can fulfil obligations, kept even before any obligation exists."""

    at: AwareDatetime
    ref: EventRef


class Incident(BaseModel):
    """An incident a child was involved in (for scoring and patterns)."""

    at: AwareDatetime
    category: IncidentCategory
    present: bool


class Episode(BaseModel):
    """A missing episode (for scoring and patterns)."""

    at: AwareDatetime
    grade: MissingRiskGrade


class Concern(BaseModel):
    """An exploitation concern (for scoring)."""

    at: AwareDatetime
    level: ConcernLevel


class LevelChange(BaseModel):
    """An offender's risk level from a registration or assessment."""

    at: AwareDatetime
    level: OffenderRiskLevel
    ref: EventRef
    assessed: bool = Field(description="from a risk assessment, which restarts the visit cycle")


class Visit(BaseModel):
    """An offender visit."""

    at: AwareDatetime
    ref: EventRef


class RecentEvent(BaseModel):
    """An event's type and time, for the child view (no content)."""

    type: str
    at: AwareDatetime


class PatternAlert(BaseModel):
    """A pattern alert already raised, so one pattern raises once."""

    rule: str
    scope: str
    at: AwareDatetime


class SubjectState(BaseModel):
    """Everything the risk service remembers about one subject."""

    kind: SubjectKind
    id: str
    partition: int | None = Field(
        default=None, description="partition that owns this subject, to rebuild the schedule"
    )
    revision: int = Field(default=0, description="writes so far: orders the child's views")
    seen: dict[str, datetime] = Field(
        default_factory=dict, description="`source|id` of processed events, with event time"
    )
    obligations: dict[str, Obligation] = Field(default_factory=dict)
    facts: dict[str, list[Fact]] = Field(default_factory=dict)
    recent: list[RecentEvent] = Field(default_factory=list)
    # Child history.
    age: int | None = None
    incidents: dict[str, Incident] = Field(default_factory=dict)
    episodes: dict[str, Episode] = Field(default_factory=dict)
    concerns: dict[str, Concern] = Field(default_factory=dict)
    detentions: dict[str, datetime] = Field(default_factory=dict)
    patterns: list[PatternAlert] = Field(default_factory=list)
    level: RiskLevel = RiskLevel.LOW
    # Offender history.
    levels: list[LevelChange] = Field(default_factory=list)
    visits: list[Visit] = Field(default_factory=list)

    @property
    def key(self) -> str:
        """Return the table key of this subject."""
        return str(SubjectKey(self.kind, self.id))

    def next_due(self) -> datetime | None:
        """Return the earliest deadline still being watched, if any."""
        return min((o.check_at for o in self.obligations.values() if o.pending), default=None)

    def to_json(self) -> bytes:
        """Serialise compactly for the table."""
        return self.model_dump_json(exclude_defaults=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> SubjectState:
        """Load from the table."""
        return cls.model_validate_json(raw)
