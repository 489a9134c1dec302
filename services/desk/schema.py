"""The desk's tables, as SQLAlchemy Core metadata (the queries are built from it).

The schema itself is owned by the Alembic migrations (`migrations/versions/`); a test
compares the migrated database with this metadata, so the two cannot drift apart.
Subject ids are stored only where a page needs them (alerts, children, audit records, the
assurance pack's oldest open cases); the analysts' views hold none.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

Stamp = DateTime(timezone=True)

#: The latest view of every alert (notify's `alert.view`, highest revision wins).
alerts = Table(
    "alerts",
    metadata,
    Column("alert_id", Text, primary_key=True),
    Column("revision", BigInteger, nullable=False),
    Column("status", Text, nullable=False),
    Column("severity", Text, nullable=False),
    Column("severity_rank", SmallInteger, nullable=False),
    Column("rule", Text, nullable=False),
    Column("area", Text),
    Column("subject_kind", Text, nullable=False),
    Column("subject_id", Text, nullable=False),
    Column("raised_at", Stamp, nullable=False),
    Column("due_at", Stamp),
    Column("overdue_since", Stamp, nullable=False),
    Column("level", Integer, nullable=False),
    Column("reopened", Boolean, nullable=False),
    Column("acknowledged_by", Text),
    Column("summary", Text, nullable=False),
    Column("resolved_at", Stamp),
    Column("updated_at", Stamp, nullable=False),
    Column("view", JSONB, nullable=False),
    # The work queue's order within a severity (services.desk.urgency): the tier, then
    # the time it is ordered by. Pure functions of the view, stored so the queue pages
    # by keyset on an index.
    Column("urgency_tier", SmallInteger, nullable=False),
    Column("urgency_at", Stamp, nullable=False),
    # The event that raised the alert: the alerts one incident raised share it.
    Column("trigger_source", Text, nullable=False),
    Column("trigger_id", Text, nullable=False),
    # The list: newest raise first, ties by id (keyset paging).
    Index("ix_alerts_list", text("raised_at DESC"), "alert_id"),
    # The work queue: open and acknowledged only, most severe, then most urgent.
    # Area, status and rule ride along so the caller's areas, a status, the counts per
    # severity and the filters' choices are answered from the index alone.
    Index(
        "ix_alerts_urgency",
        text("severity_rank DESC"),
        "urgency_tier",
        "urgency_at",
        "alert_id",
        postgresql_where=text("status IN ('open', 'acknowledged')"),
        postgresql_include=["area", "status", "rule"],
    ),
    Index("ix_alerts_subject", "subject_kind", "subject_id"),
    Index("ix_alerts_trigger", "trigger_id"),
    # The handover: what changed since the start of a shift.
    Index("ix_alerts_updated", "updated_at"),
)

#: The latest view of every child (risk's `child.view`, highest revision wins).
children = Table(
    "children",
    metadata,
    Column("child_id", Text, primary_key=True),
    Column("revision", BigInteger, nullable=False),
    Column("as_of", Stamp, nullable=False),
    Column("level", Text, nullable=False),
    Column("score", Integer, nullable=False),
    Column("view", JSONB, nullable=False),
)

#: One row per obligation for the timeliness report: outcomes and closures merged.
obligations = Table(
    "obligations",
    metadata,
    Column("obligation_id", Text, primary_key=True),
    Column("rule", Text),
    Column("area", Text),
    Column("severity", Text),
    Column("triggered_at", Stamp),
    Column("due_at", Stamp),
    Column("fulfilled_at", Stamp),
    Column("breached", Boolean, nullable=False, server_default=text("false")),
    Column("closed_at", Stamp),
    Column("close_reason", Text),
    Column("described_at", Stamp),
    Column("subject_kind", Text),
    Column("subject_id", Text),
    Column("recorded_late_by_seconds", Float),
    Column("transfer_requested_at", Stamp),
    Column("transfer_refused_at", Stamp),
    Index("ix_obligations_due", "due_at"),
)

#: Every event notify published about alerts (deliveries, escalations, acts), by id.
notification_events = Table(
    "notification_events",
    metadata,
    Column("event_id", Text, primary_key=True),
    Column("type", Text, nullable=False),
    Column("alert_id", Text, nullable=False),
    Column("at", Stamp, nullable=False),
    Column("data", JSONB, nullable=False),
    Index("ix_notification_events_alert", "alert_id", "at"),
)

#: The audit trail, searchable: who collected, consulted or altered what, and when.
audit_records = Table(
    "audit_records",
    metadata,
    Column("source", Text, primary_key=True),
    Column("record_id", Text, primary_key=True),
    Column("action", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("at", Stamp, nullable=False),
    Column("child_id", Text),
    Column("alert_id", Text),
    Column("event_source", Text),
    Column("event_id", Text),
    Column("principal", Text),
    Index("ix_audit_actor", "actor", "at"),
    Index("ix_audit_child", "child_id", "at", postgresql_where=text("child_id IS NOT NULL")),
    Index("ix_audit_alert", "alert_id", "at", postgresql_where=text("alert_id IS NOT NULL")),
    Index("ix_audit_action", "action", "at"),
)

#: Where the projector is in each partition: written in the transaction of its rows.
projector_offsets = Table(
    "projector_offsets",
    metadata,
    Column("topic", Text, primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("next_offset", BigInteger, nullable=False),
    Column("caught_up_at", Stamp),
    Column("updated_at", Stamp, nullable=False),
)

#: Console sessions: a hash of the cookie's id, never the id itself.
sessions = Table(
    "sessions",
    metadata,
    Column("id_hash", Text, primary_key=True),
    Column("principal", Text, nullable=False),
    Column("identity", JSONB, nullable=False),
    Column("csrf", Text, nullable=False),
    Column("created_at", Stamp, nullable=False),
    Column("last_seen_at", Stamp, nullable=False),
    # The last list of alerts audited for this session (services.desk.sessions).
    Column("listed_hash", Text),
    Column("listed_at", Stamp),
    Index("ix_sessions_principal", "principal", "created_at"),
)

#: OpenID Connect sign-ins sent to the identity provider and not yet back (any pod ends them).
sign_in_attempts = Table(
    "sign_in_attempts",
    metadata,
    Column("state_hash", Text, primary_key=True),
    Column("binding_hash", Text, nullable=False),
    Column("nonce", Text, nullable=False),
    Column("code_verifier", Text, nullable=False),
    Column("created_at", Stamp, nullable=False),
    Index("ix_sign_in_attempts_created", "created_at"),
)

#: Sign-in attempts and failures per client address and per account, per fixed window.
sign_in_counts = Table(
    "sign_in_counts",
    metadata,
    Column("key", Text, primary_key=True),
    Column("window_start", Stamp, primary_key=True),
    Column("count", Integer, nullable=False),
    Index("ix_sign_in_counts_window", "window_start"),
)

#: Dead letters by the original record's position: why, when, and the source of the
#: original event when it could be read. Never the payload.
dead_letters = Table(
    "dead_letters",
    metadata,
    Column("topic", Text, primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("offset", BigInteger, primary_key=True),
    Column("failed_at", Stamp, nullable=False),
    Column("reason", Text, nullable=False),
    Column("source", Text),
    Index("ix_dead_letters_failed", "failed_at"),
)

#: The first and last arrival on the events topic per source and UTC day (sources gone
#: silent); times rather than counts, so a replay changes nothing.
source_days = Table(
    "source_days",
    metadata,
    Column("source", Text, primary_key=True),
    Column("day", Date, primary_key=True),
    Column("first_at", Stamp, nullable=False),
    Column("last_at", Stamp, nullable=False),
)

#: Each offender's latest manager assignment (`offender.manager_assigned`), for caseloads.
offender_managers = Table(
    "offender_managers",
    metadata,
    Column("offender_id", Text, primary_key=True),
    Column("manager_id", Text, nullable=False),
    Column("area", Text, nullable=False),
    Column("assigned_at", Stamp, nullable=False),
    Column("event_source", Text, nullable=False),
    Column("event_id", Text, nullable=False),
    Index("ix_offender_managers_area", "area", "manager_id"),
)

#: Fulfilments from sources the policy does not accept for the rule (from child views).
refused_fulfilments = Table(
    "refused_fulfilments",
    metadata,
    Column("child_id", Text, primary_key=True),
    Column("rule", Text, primary_key=True),
    Column("source", Text, primary_key=True),
    Column("at", Stamp, primary_key=True),
    Column("recorded_at", Stamp, nullable=False),
    Column("area", Text),
    Index("ix_refused_fulfilments_recorded", "recorded_at"),
)

#: Weekly digests and monthly packs: one row per (kind, period, area), sent exactly when
#: `status` is `sent`; any desk pod takes a due row under a lease and retries until sent.
scheduled_sends = Table(
    "scheduled_sends",
    metadata,
    Column("kind", Text, primary_key=True),
    Column("period", Text, primary_key=True),
    Column("area", Text, primary_key=True),
    Column("due_at", Stamp, nullable=False),
    Column("status", Text, nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", Stamp, nullable=False),
    Column("leased_until", Stamp),
    Column("sent_at", Stamp),
    Column("last_error", Text),
    Column("figures_sha256", Text),
    Index(
        "ix_scheduled_sends_due",
        "next_attempt_at",
        postgresql_where=text("status <> 'sent'"),
    ),
)

#: When each schedule began: periods due before it are never sent.
schedule_epochs = Table(
    "schedule_epochs",
    metadata,
    Column("kind", Text, primary_key=True),
    Column("started_at", Stamp, nullable=False),
)
