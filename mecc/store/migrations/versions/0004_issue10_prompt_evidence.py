"""issue 10: what a prompt rests on (the facts its rule read, with their dates)

Revision ID: 0004_issue10_prompt_evidence
Revises: 0003_issue12_people
Create Date: 2026-12-04 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004_issue10_prompt_evidence"
down_revision = "0003_issue12_people"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: prompts made before this revision have no recorded evidence.
    with op.batch_alter_table("prompts", schema=None) as batch_op:
        batch_op.add_column(sa.Column(
            "evidence", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()),
                                               "postgresql"), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("prompts", schema=None) as batch_op:
        batch_op.drop_column("evidence")
