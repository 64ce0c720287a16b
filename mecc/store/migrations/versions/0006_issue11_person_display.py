"""issue 11: the person's display label, held in one column until it is erased

Revision ID: 0006_issue11_person_display
Revises: 0005_issue14_reports_referrals
Create Date: 2026-12-04 21:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_issue11_person_display"
down_revision = "0005_issue14_reports_referrals"
branch_labels = None
depends_on = None

# Partial on PostgreSQL (the labels still held); SQLite, for development, indexes every row.
HELD = sa.text("person_display IS NOT NULL")


def upgrade() -> None:
    # Nullable: events stored before this revision carried no label (the schema refused one).
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("person_display", sa.String(length=100), nullable=True))
    op.create_index("ix_events_display_held", "events", ["occurred_at"], unique=False,
                    postgresql_where=HELD)


def downgrade() -> None:
    op.drop_index("ix_events_display_held", table_name="events")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_column("person_display")
