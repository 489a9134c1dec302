"""Settings of the timeliness report (`NOTIFY_REPORTS__*`)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ReportSettings(BaseModel):
    """How long the report remembers obligations, and how often it forgets."""

    retention_days: int = Field(
        default=1096,
        ge=1,
        description="days after its last date (due, fulfilled or closed) that a finished "
        "obligation leaves the report's table: three years, so inspections compare years; "
        "obligations still open are always kept",
    )
    prune_interval_seconds: float = Field(
        default=3600.0, gt=0, description="how often each worker looks for what to forget"
    )
