"""Access: pending OpenID Connect sign-ins, sign-in throttling, the queue's last audited list.

`sign_in_attempts` holds each sign-in sent to the identity provider until it comes back
(state, nonce and PKCE verifier), so any desk pod can complete it. `sign_in_counts`
counts sign-in attempts and failures per client address and per account in fixed
windows, shared by every pod. A session remembers the last list of alerts it recorded
(`listed_hash`, `listed_at`), so a polling queue is audited once per distinct list.

Revision ID: 0002_access
Revises: 0001_read_side
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_access"
down_revision = "0001_read_side"
branch_labels = None
depends_on = None

Stamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Add the access tables and the sessions' last audited list."""
    op.create_table(
        "sign_in_attempts",
        sa.Column("state_hash", sa.Text, primary_key=True),
        sa.Column("binding_hash", sa.Text, nullable=False),
        sa.Column("nonce", sa.Text, nullable=False),
        sa.Column("code_verifier", sa.Text, nullable=False),
        sa.Column("created_at", Stamp, nullable=False),
    )
    op.create_index("ix_sign_in_attempts_created", "sign_in_attempts", ["created_at"])
    op.create_table(
        "sign_in_counts",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("window_start", Stamp, primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
    )
    op.create_index("ix_sign_in_counts_window", "sign_in_counts", ["window_start"])
    op.add_column("sessions", sa.Column("listed_hash", sa.Text))
    op.add_column("sessions", sa.Column("listed_at", Stamp))


def downgrade() -> None:
    """Drop them (pending sign-ins are lost: people start again)."""
    op.drop_column("sessions", "listed_at")
    op.drop_column("sessions", "listed_hash")
    op.drop_table("sign_in_counts")
    op.drop_table("sign_in_attempts")
