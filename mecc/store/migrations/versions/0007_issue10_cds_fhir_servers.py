"""issue 10: the FHIR servers a CDS client may have the service fetch from

Revision ID: 0007_issue10_cds_fhir_servers
Revises: 0006_issue11_person_display
Create Date: 2026-12-04 22:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007_issue10_cds_fhir_servers"
down_revision = "0006_issue11_person_display"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Clients registered before this revision may have nothing fetched: an empty allow-list.
    with op.batch_alter_table("cds_clients", schema=None) as batch_op:
        batch_op.add_column(sa.Column(
            "fhir_servers", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
            nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("cds_clients", schema=None) as batch_op:
        batch_op.drop_column("fhir_servers")
