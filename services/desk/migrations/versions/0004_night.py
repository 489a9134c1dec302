"""The night shift: the queue in urgency order, alerts by incident, the handover.

Adds to `alerts` the urgency key (`urgency_tier`, `urgency_at`: services.desk.urgency)
and the event that raised each alert (`trigger_source`, `trigger_id`), filled from the
stored views; the queue's index follows the new order, and the handover finds what
changed in a shift by `updated_at`.

Revision ID: 0004_night
Revises: 0001_read_side
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_night"
down_revision = "0003_assurance"
branch_labels = None
depends_on = None

Stamp = sa.DateTime(timezone=True)

# The same key as services.desk.urgency.urgency(view), in SQL over the stored view, for
# the rows projected before this revision (new rows get it from the projector).
_RUNG_AFTER = (
    "(SELECT (r->>'after_seconds')::int FROM jsonb_array_elements(view->'ladder') r "
    "WHERE (r->>'level')::int = alerts.level + {offset})"
)
_CLIMBS = f"(status = 'open' AND {_RUNG_AFTER.format(offset=1)} IS NOT NULL)"
_NEXT_AT = "(view->'next_step'->>'at')::timestamptz"
_START = (
    "CASE WHEN view ? 'reopened_at' AND "
    f"{_RUNG_AFTER.format(offset=0)} IS NOT NULL "
    "THEN (view->>'reopened_at')::timestamptz "
    f"- make_interval(secs => {_RUNG_AFTER.format(offset=0)}) ELSE raised_at END"
)
BACKFILL = f"""
UPDATE alerts SET
  trigger_source = view->'alert'->'trigger'->>'source',
  trigger_id = view->'alert'->'trigger'->>'id',
  urgency_tier = CASE
    WHEN status = 'resolved' THEN 3
    WHEN status = 'acknowledged' THEN 2
    WHEN {_CLIMBS} THEN 0
    ELSE 1 END,
  urgency_at = CASE
    WHEN status = 'resolved' THEN COALESCE(resolved_at, updated_at)
    WHEN status = 'acknowledged' THEN COALESCE({_NEXT_AT}, overdue_since)
    WHEN {_CLIMBS} AND view->'next_step'->>'kind' = 'level' THEN {_NEXT_AT}
    WHEN {_CLIMBS} THEN GREATEST(
      ({_START}) + make_interval(secs => {_RUNG_AFTER.format(offset=1)}), {_NEXT_AT})
    ELSE overdue_since END
"""  # noqa: S608 - built from the constants above, no input
QUEUE_WHERE = sa.text("status IN ('open', 'acknowledged')")


def upgrade() -> None:
    """Add the urgency key and the trigger, fill them, and index the queue by urgency."""
    op.add_column("alerts", sa.Column("urgency_tier", sa.SmallInteger))
    op.add_column("alerts", sa.Column("urgency_at", Stamp))
    op.add_column("alerts", sa.Column("trigger_source", sa.Text))
    op.add_column("alerts", sa.Column("trigger_id", sa.Text))
    op.execute(BACKFILL)
    for column in ("urgency_tier", "urgency_at", "trigger_source", "trigger_id"):
        op.alter_column("alerts", column, nullable=False)
    op.drop_index("ix_alerts_queue", table_name="alerts")
    op.create_index(
        "ix_alerts_urgency",
        "alerts",
        [sa.text("severity_rank DESC"), "urgency_tier", "urgency_at", "alert_id"],
        postgresql_where=QUEUE_WHERE,
        postgresql_include=["area", "status", "rule"],
    )
    op.create_index("ix_alerts_trigger", "alerts", ["trigger_id"])
    op.create_index("ix_alerts_updated", "alerts", ["updated_at"])


def downgrade() -> None:
    """Back to the queue by overdue time."""
    op.drop_index("ix_alerts_updated", table_name="alerts")
    op.drop_index("ix_alerts_trigger", table_name="alerts")
    op.drop_index("ix_alerts_urgency", table_name="alerts")
    op.create_index(
        "ix_alerts_queue",
        "alerts",
        [sa.text("severity_rank DESC"), "overdue_since", "alert_id"],
        postgresql_where=QUEUE_WHERE,
        postgresql_include=["area", "status", "rule"],
    )
    for column in ("trigger_id", "trigger_source", "urgency_at", "urgency_tier"):
        op.drop_column("alerts", column)
