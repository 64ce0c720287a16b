"""issue 14: who prompts reached (person attributes at the contact), closed-loop referrals and
the person's own outcomes

Revision ID: 0005_issue14_reports_referrals
Revises: 0004_issue10_prompt_evidence
Create Date: 2026-12-04 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mecc.platform.db

revision = "0005_issue14_reports_referrals"
down_revision = "0004_issue10_prompt_evidence"
branch_labels = None
depends_on = None

REPORT_COLUMNS = ["status", "topic", "rule_key", "setting", "organisation", "team", "staff_id",
                  "ethnicity_group", "age_band", "sex", "postcode_district"]
ITEMS = ("better_able_to_manage", "support_around_me", "hope_for_future", "know_what_helps",
         "involved_in_decisions", "able_to_articulate_needs")


def _time(name: str, nullable: bool) -> sa.Column:
    return sa.Column(name, mecc.platform.db.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    # Nullable: prompts stored before this revision report their person as "unknown".
    with op.batch_alter_table("prompts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("age_band", sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column("sex", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("ethnicity_group", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("postcode_district", sa.String(length=8), nullable=True))
    # Reports read this index alone on PostgreSQL (INCLUDE); on SQLite it is the old one again.
    op.drop_index("ix_prompts_contact_at", table_name="prompts")
    op.create_index("ix_prompts_contact_report", "prompts", ["contact_at"],
                    postgresql_include=REPORT_COLUMNS)
    op.create_table(
        "referrals",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("prompt_id", sa.String(length=36), nullable=False),
        sa.Column("outcome_id", sa.Integer(), nullable=False),
        sa.Column("organisation", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("person_id", sa.String(length=100), nullable=False),
        sa.Column("team", sa.String(length=100), nullable=True),
        sa.Column("staff_id", sa.String(length=100), nullable=True),
        sa.Column("topic", sa.String(length=40), nullable=False),
        sa.Column("rule_key", sa.String(length=64), nullable=False),
        sa.Column("service_id", sa.String(length=100), nullable=False),
        sa.Column("service_name", sa.String(length=200), nullable=False),
        sa.Column("service_type", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attendance", sa.String(length=20), nullable=True),
        _time("opened_at", False), _time("accepted_at", True), _time("closed_at", True),
        _time("updated_at", False),
        sa.ForeignKeyConstraint(["outcome_id"], ["prompt_outcomes.id"]),
        sa.ForeignKeyConstraint(["prompt_id"], ["prompts.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_referrals_prompt_id", "referrals", ["prompt_id"])
    op.create_index("ix_referrals_org_opened", "referrals", ["organisation", "opened_at"])
    op.create_index("ix_referrals_opened", "referrals", ["opened_at"])
    op.create_index("ix_referrals_service", "referrals", ["service_id"])
    op.create_table(
        "referral_status_changes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("referral_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        _time("recorded_at", False),
        sa.Column("recorded_by", sa.String(length=400), nullable=False),
        sa.ForeignKeyConstraint(["referral_id"], ["referrals.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_referral_status_changes_referral_id", "referral_status_changes",
                    ["referral_id"])
    op.create_table(
        "personal_outcomes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("referral_id", sa.String(length=36), nullable=False),
        _time("recorded_at", False),
        sa.Column("recorded_by", sa.String(length=400), nullable=False),
        *(sa.Column(item, sa.SmallInteger(), nullable=True) for item in ITEMS),
        sa.ForeignKeyConstraint(["referral_id"], ["referrals.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_personal_outcomes_referral_id", "personal_outcomes", ["referral_id"])


def downgrade() -> None:
    op.drop_index("ix_personal_outcomes_referral_id", table_name="personal_outcomes")
    op.drop_table("personal_outcomes")
    op.drop_index("ix_referral_status_changes_referral_id",
                  table_name="referral_status_changes")
    op.drop_table("referral_status_changes")
    for name in ("ix_referrals_service", "ix_referrals_opened", "ix_referrals_org_opened",
                 "ix_referrals_prompt_id"):
        op.drop_index(name, table_name="referrals")
    op.drop_table("referrals")
    op.drop_index("ix_prompts_contact_report", table_name="prompts")
    op.create_index("ix_prompts_contact_at", "prompts", ["contact_at"])
    with op.batch_alter_table("prompts", schema=None) as batch_op:
        for column in ("postcode_district", "ethnicity_group", "sex", "age_band"):
            batch_op.drop_column(column)
