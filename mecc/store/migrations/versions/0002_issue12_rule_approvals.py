"""issue 12: rule publish approvals

Revision ID: 0002_issue12_rule_approvals
Revises: 0001
Create Date: 2026-12-04 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mecc.platform.db

revision = "0002_issue12_rule_approvals"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rule `organisations` needs no column: it is part of each version's body (JSON), so a
    # change of organisations is a new version that is reviewed like any other.
    op.create_table(
        "rule_approvals",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=10), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("requested_by", sa.String(length=400), nullable=False),
        sa.Column("requester", sa.String(length=100), nullable=False),
        sa.Column("requested_at", mecc.platform.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.String(length=400), nullable=True),
        sa.Column("decided_at", mecc.platform.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("rule_approvals", schema=None) as batch_op:
        batch_op.create_index("ix_rule_approvals_key_status", ["key", "status"], unique=False)
    # A version's author may be a person ("Name (email)"), longer than a key's name.
    with op.batch_alter_table("rule_versions", schema=None) as batch_op:
        batch_op.alter_column("updated_by", existing_type=sa.String(length=100),
                              type_=sa.String(length=400), existing_nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("rule_versions", schema=None) as batch_op:
        batch_op.alter_column("updated_by", existing_type=sa.String(length=400),
                              type_=sa.String(length=100), existing_nullable=True)
    with op.batch_alter_table("rule_approvals", schema=None) as batch_op:
        batch_op.drop_index("ix_rule_approvals_key_status")
    op.drop_table("rule_approvals")
