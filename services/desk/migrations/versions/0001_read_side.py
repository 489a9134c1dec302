"""Create the read side: its tables, the analysts' views and their role.

Alerts, children, obligations, notification events, audit records, projector offsets
and sessions.

Revision ID: 0001_read_side
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001_read_side"
down_revision = None
branch_labels = None
depends_on = None

Stamp = sa.DateTime(timezone=True)
ANALYST = "safeguard_analyst"

# Read-only views for analysts and Grafana's PostgreSQL data source: the obligations'
# outcomes (judged as of now, as the timeliness report does), compliance per month, and
# the alerts without their subjects. No subject ids, no free text.
VIEWS = {
    "analyst_obligations": """
        SELECT obligation_id, rule, area, severity, triggered_at, due_at, fulfilled_at,
               closed_at, close_reason, breached,
               CASE
                 WHEN fulfilled_at IS NOT NULL AND fulfilled_at <= due_at THEN 'met_on_time'
                 WHEN fulfilled_at IS NOT NULL THEN 'met_late'
                 WHEN closed_at IS NOT NULL THEN 'closed_by_hand'
                 WHEN due_at > now() THEN 'not_yet_due'
                 ELSE 'open_overdue'
               END AS state,
               CASE
                 WHEN fulfilled_at IS NOT NULL
                   THEN GREATEST(0, EXTRACT(EPOCH FROM fulfilled_at - due_at))
                 WHEN closed_at IS NULL AND due_at <= now()
                   THEN EXTRACT(EPOCH FROM now() - due_at)
               END AS lateness_seconds
        FROM obligations
        WHERE rule IS NOT NULL AND due_at IS NOT NULL
    """,
    "analyst_compliance_monthly": """
        SELECT date_trunc('month', due_at AT TIME ZONE 'UTC') AS month, rule, area,
               count(*) FILTER (WHERE state <> 'not_yet_due') AS due,
               count(*) FILTER (WHERE state = 'met_on_time') AS met_on_time,
               count(*) FILTER (WHERE state = 'met_late') AS met_late,
               count(*) FILTER (WHERE state = 'open_overdue') AS open_overdue,
               count(*) FILTER (WHERE state = 'closed_by_hand') AS closed_by_hand,
               count(*) FILTER (WHERE state = 'not_yet_due') AS not_yet_due,
               round(100.0 * count(*) FILTER (WHERE state = 'met_on_time')
                     / NULLIF(count(*) FILTER (WHERE state <> 'not_yet_due'), 0), 1)
                 AS on_time_percent
        FROM analyst_obligations
        GROUP BY 1, 2, 3
    """,
    "analyst_alerts": """
        SELECT alert_id, rule, severity, area, status, level, raised_at, due_at,
               resolved_at, acknowledged_by IS NOT NULL AS acknowledged, reopened
        FROM alerts
    """,
}


def upgrade() -> None:
    """Create the read side."""
    op.create_table(
        "alerts",
        sa.Column("alert_id", sa.Text, primary_key=True),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("severity", sa.Text, nullable=False),
        sa.Column("severity_rank", sa.SmallInteger, nullable=False),
        sa.Column("rule", sa.Text, nullable=False),
        sa.Column("area", sa.Text),
        sa.Column("subject_kind", sa.Text, nullable=False),
        sa.Column("subject_id", sa.Text, nullable=False),
        sa.Column("raised_at", Stamp, nullable=False),
        sa.Column("due_at", Stamp),
        sa.Column("overdue_since", Stamp, nullable=False),
        sa.Column("level", sa.Integer, nullable=False),
        sa.Column("reopened", sa.Boolean, nullable=False),
        sa.Column("acknowledged_by", sa.Text),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("resolved_at", Stamp),
        sa.Column("updated_at", Stamp, nullable=False),
        sa.Column("view", JSONB, nullable=False),
    )
    op.create_index("ix_alerts_list", "alerts", [sa.text("raised_at DESC"), "alert_id"])
    op.create_index(
        "ix_alerts_queue",
        "alerts",
        [sa.text("severity_rank DESC"), "overdue_since", "alert_id"],
        postgresql_where=sa.text("status IN ('open', 'acknowledged')"),
        postgresql_include=["area", "status", "rule"],
    )
    op.create_index("ix_alerts_subject", "alerts", ["subject_kind", "subject_id"])
    op.create_table(
        "children",
        sa.Column("child_id", sa.Text, primary_key=True),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("as_of", Stamp, nullable=False),
        sa.Column("level", sa.Text, nullable=False),
        sa.Column("score", sa.Integer, nullable=False),
        sa.Column("view", JSONB, nullable=False),
    )
    op.create_table(
        "obligations",
        sa.Column("obligation_id", sa.Text, primary_key=True),
        sa.Column("rule", sa.Text),
        sa.Column("area", sa.Text),
        sa.Column("severity", sa.Text),
        sa.Column("triggered_at", Stamp),
        sa.Column("due_at", Stamp),
        sa.Column("fulfilled_at", Stamp),
        sa.Column("breached", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("closed_at", Stamp),
        sa.Column("close_reason", sa.Text),
        sa.Column("described_at", Stamp),
    )
    op.create_index("ix_obligations_due", "obligations", ["due_at"])
    op.create_table(
        "notification_events",
        sa.Column("event_id", sa.Text, primary_key=True),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("alert_id", sa.Text, nullable=False),
        sa.Column("at", Stamp, nullable=False),
        sa.Column("data", JSONB, nullable=False),
    )
    op.create_index("ix_notification_events_alert", "notification_events", ["alert_id", "at"])
    op.create_table(
        "audit_records",
        sa.Column("source", sa.Text, primary_key=True),
        sa.Column("record_id", sa.Text, primary_key=True),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("at", Stamp, nullable=False),
        sa.Column("child_id", sa.Text),
        sa.Column("alert_id", sa.Text),
        sa.Column("event_source", sa.Text),
        sa.Column("event_id", sa.Text),
        sa.Column("principal", sa.Text),
    )
    op.create_index("ix_audit_actor", "audit_records", ["actor", "at"])
    op.create_index(
        "ix_audit_child",
        "audit_records",
        ["child_id", "at"],
        postgresql_where=sa.text("child_id IS NOT NULL"),
    )
    op.create_index(
        "ix_audit_alert",
        "audit_records",
        ["alert_id", "at"],
        postgresql_where=sa.text("alert_id IS NOT NULL"),
    )
    op.create_index("ix_audit_action", "audit_records", ["action", "at"])
    op.create_table(
        "projector_offsets",
        sa.Column("topic", sa.Text, primary_key=True),
        sa.Column("partition", sa.Integer, primary_key=True),
        sa.Column("next_offset", sa.BigInteger, nullable=False),
        sa.Column("caught_up_at", Stamp),
        sa.Column("updated_at", Stamp, nullable=False),
    )
    op.create_table(
        "sessions",
        sa.Column("id_hash", sa.Text, primary_key=True),
        sa.Column("principal", sa.Text, nullable=False),
        sa.Column("identity", JSONB, nullable=False),
        sa.Column("csrf", sa.Text, nullable=False),
        sa.Column("created_at", Stamp, nullable=False),
        sa.Column("last_seen_at", Stamp, nullable=False),
    )
    op.create_index("ix_sessions_principal", "sessions", ["principal", "created_at"])
    for name, body in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {body}")
    # Roles belong to the server, not the database: created once, kept on downgrade.
    op.execute(
        f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ANALYST}') "
        f"THEN CREATE ROLE {ANALYST} NOLOGIN; END IF; END $$"
    )
    op.execute(f"GRANT USAGE ON SCHEMA public TO {ANALYST}")
    for name in VIEWS:
        op.execute(f"GRANT SELECT ON {name} TO {ANALYST}")


def downgrade() -> None:
    """Drop the read side (the projection is rebuilt from the topics)."""
    for name in reversed(VIEWS):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    for table in (
        "sessions",
        "projector_offsets",
        "audit_records",
        "notification_events",
        "obligations",
        "children",
        "alerts",
    ):
        op.drop_table(table)
