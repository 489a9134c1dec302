"""Per-subject state kept in the risk service's table: what it has seen and what it owes.

A subject is a child, an offender or an enquiry; its key is `kind:id`. The state is
small, JSON-serialisable and rebuilt from the table's changelog after a restart.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field

from schemas.alerts import EventRef, Severity

SubjectKind = Literal["child", "offender", "enquiry"]


class Obligation(BaseModel):
    """Something that must happen for a subject by `due_at`."""

    rule: str
    scope: str = Field(description="what the obligation is per, e.g. the incident id")
    trigger: EventRef
    due_at: AwareDatetime
    severity: Severity
    area: str | None = None
    summary: str
    fulfilled_at: AwareDatetime | None = None
    fulfilment: EventRef | None = None
    raised: bool = False
    resolved: bool = False

    @property
    def key(self) -> str:
        """Return the obligation's identity within its subject."""
        return obligation_key(self.rule, self.scope)

    @property
    def pending(self) -> bool:
        """Tell whether the clock still has to be watched for this obligation."""
        return not self.raised and self.fulfilled_at is None


class Fulfilment(BaseModel):
    """The earliest event seen that meets an obligation, kept even before its trigger arrives."""

    at: AwareDatetime
    ref: EventRef


class SubjectState(BaseModel):
    """Everything the risk service remembers about one subject."""

    kind: SubjectKind
    id: str
    seen: list[str] = Field(default_factory=list, description="`source|id` of processed events")
    obligations: dict[str, Obligation] = Field(default_factory=dict)
    fulfilments: dict[str, Fulfilment] = Field(default_factory=dict)
    partition: int | None = Field(
        default=None, description="partition that owns this subject, to rebuild the schedule"
    )

    @property
    def key(self) -> str:
        """Return the table key of this subject."""
        return subject_key(self.kind, self.id)

    def next_due(self) -> datetime | None:
        """Return the earliest deadline still being watched, if any."""
        dues = [o.due_at for o in self.obligations.values() if o.pending]
        return min(dues, default=None)


def obligation_key(rule: str, scope: str) -> str:
    """Return the identity of an obligation within its subject."""
    return f"{rule}|{scope}"


def subject_key(kind: SubjectKind, subject_id: str) -> str:
    """Return the table and topic key of a subject."""
    return f"{kind}:{subject_id}"
