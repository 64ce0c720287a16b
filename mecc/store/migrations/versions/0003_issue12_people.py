"""issue 12: people who sign in (users), and audit actors long enough to name them

Revision ID: 0003_issue12_people
Revises: 0002_issue12_rule_approvals
Create Date: 2026-12-04 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mecc.platform.db

revision = "0003_issue12_people"
down_revision = "0002_issue12_rule_approvals"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=30), nullable=False),
        sa.Column("organisation", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=True),
        sa.Column("oidc_subject", sa.String(length=255), nullable=True),
        sa.Column("created_at", mecc.platform.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_signed_in_at", mecc.platform.db.UTCDateTime(timezone=True),
                  nullable=True),
        sa.Column("disabled_at", mecc.platform.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("email"),
        sa.UniqueConstraint("oidc_subject"),
    )
    # "Ann Example (ann.example@nhs.net)" does not fit the 100 characters keys needed.
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.alter_column("actor", existing_type=sa.String(length=100),
                              type_=sa.String(length=400), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.alter_column("actor", existing_type=sa.String(length=400),
                              type_=sa.String(length=100), existing_nullable=False)
    op.drop_table("users")
