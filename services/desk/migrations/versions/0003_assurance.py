"""The assurance pack's data: what the report counts apart, data quality, capacity, sends.

- `obligations` gains the subject (the pack lists the oldest open cases by pseudonymous
  id), the fulfilment's recorded lateness (backdated fulfilments are counted apart) and
  a custody's transfer requested and refused;
- `dead_letters`: one row per dead letter, by the original record's position (its
  reason, the original event's source when it could be read), never the payload;
- `source_days`: the first and last arrival on the events topic per source and UTC day,
  for sources gone silent (times, not counts: a replay changes nothing);
- `offender_managers`: each offender's latest manager assignment, for caseloads;
- `refused_fulfilments`: events from sources the policy does not accept for a rule, as
  the child views list them;
- `scheduled_sends`: the weekly digests and monthly packs, one row per period and area,
  sent once whichever desk pod takes it, retried until sent;
- `schedule_epochs`: when each schedule began, so a new deployment sends nothing for
  periods before it.

Revision ID: 0003_assurance
Revises: 0001_read_side
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_assurance"
down_revision = "0002_access"
branch_labels = None
depends_on = None

Stamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Add the assurance pack's columns and tables."""
    op.add_column("obligations", sa.Column("subject_kind", sa.Text))
    op.add_column("obligations", sa.Column("subject_id", sa.Text))
    op.add_column("obligations", sa.Column("recorded_late_by_seconds", sa.Float))
    op.add_column("obligations", sa.Column("transfer_requested_at", Stamp))
    op.add_column("obligations", sa.Column("transfer_refused_at", Stamp))
    op.create_table(
        "dead_letters",
        sa.Column("topic", sa.Text, primary_key=True),
        sa.Column("partition", sa.Integer, primary_key=True),
        sa.Column("offset", sa.BigInteger, primary_key=True),
        sa.Column("failed_at", Stamp, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("source", sa.Text),
    )
    op.create_index("ix_dead_letters_failed", "dead_letters", ["failed_at"])
    op.create_table(
        "source_days",
        sa.Column("source", sa.Text, primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("first_at", Stamp, nullable=False),
        sa.Column("last_at", Stamp, nullable=False),
    )
    op.create_table(
        "offender_managers",
        sa.Column("offender_id", sa.Text, primary_key=True),
        sa.Column("manager_id", sa.Text, nullable=False),
        sa.Column("area", sa.Text, nullable=False),
        sa.Column("assigned_at", Stamp, nullable=False),
        sa.Column("event_source", sa.Text, nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
    )
    op.create_index("ix_offender_managers_area", "offender_managers", ["area", "manager_id"])
    op.create_table(
        "refused_fulfilments",
        sa.Column("child_id", sa.Text, primary_key=True),
        sa.Column("rule", sa.Text, primary_key=True),
        sa.Column("source", sa.Text, primary_key=True),
        sa.Column("at", Stamp, primary_key=True),
        sa.Column("recorded_at", Stamp, nullable=False),
        sa.Column("area", sa.Text),
    )
    op.create_index("ix_refused_fulfilments_recorded", "refused_fulfilments", ["recorded_at"])
    op.create_table(
        "scheduled_sends",
        sa.Column("kind", sa.Text, primary_key=True),
        sa.Column("period", sa.Text, primary_key=True),
        sa.Column("area", sa.Text, primary_key=True),
        sa.Column("due_at", Stamp, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("next_attempt_at", Stamp, nullable=False),
        sa.Column("leased_until", Stamp),
        sa.Column("sent_at", Stamp),
        sa.Column("last_error", sa.Text),
        sa.Column("figures_sha256", sa.Text),
    )
    op.create_index(
        "ix_scheduled_sends_due",
        "scheduled_sends",
        ["next_attempt_at"],
        postgresql_where=sa.text("status <> 'sent'"),
    )
    op.create_table(
        "schedule_epochs",
        sa.Column("kind", sa.Text, primary_key=True),
        sa.Column("started_at", Stamp, nullable=False),
    )


def downgrade() -> None:
    """Drop them (the projection is rebuilt from the topics; sends are recorded again)."""
    for table in (
        "schedule_epochs",
        "scheduled_sends",
        "refused_fulfilments",
        "offender_managers",
        "source_days",
        "dead_letters",
    ):
        op.drop_table(table)
    for column in (
        "transfer_refused_at",
        "transfer_requested_at",
        "recorded_late_by_seconds",
        "subject_id",
        "subject_kind",
    ):
        op.drop_column("obligations", column)
