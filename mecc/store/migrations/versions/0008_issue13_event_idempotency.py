"""issue 13: idempotency per organisation, unique (organisation, source, event_id)

One organisation posting a (source, event_id) first must not turn another organisation's
genuine event into a 409, nor tell it which ids the other used.

Revision ID: 0008_issue13_event_idempotency
Revises: 0007_issue10_cds_fhir_servers
Create Date: 2026-12-05 10:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0008_issue13_event_idempotency"
down_revision = "0007_issue10_cds_fhir_servers"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Every existing row is unique under the wider key too, so nothing needs rewriting.
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_constraint("uq_events_source_event_id", type_="unique")
        batch_op.create_unique_constraint("uq_events_organisation_source_event_id",
                                          ["organisation", "source", "event_id"])


def downgrade() -> None:
    # Fails, as it must, once two organisations have used one (source, event_id).
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_constraint("uq_events_organisation_source_event_id", type_="unique")
        batch_op.create_unique_constraint("uq_events_source_event_id", ["source", "event_id"])
