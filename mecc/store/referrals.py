"""Tables for closed-loop referrals and the person's own outcomes (mecc.referrals).

Imported by mecc.store.models, so that loading the models registers these tables too.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from mecc.platform.db import Base, UTCDateTime, utcnow

# The six personal outcome statements of the self-management briefing, in its order; each is
# scored 1 (strongly disagree) to 5 (strongly agree), and each is a column below.
PERSONAL_OUTCOME_ITEMS = (
    "better_able_to_manage", "support_around_me", "hope_for_future", "know_what_helps",
    "involved_in_decisions", "able_to_articulate_needs",
)


def _new_id() -> str:
    return str(uuid.uuid4())


class Referral(Base):
    """A referral opened by a `referred` outcome naming a service, followed to its close.

    What the reports group by is copied from the prompt when the referral opens (the service's
    name and type too, so a later edit or deletion of the directory entry changes no history).
    """

    __tablename__ = "referrals"
    __table_args__ = (
        Index("ix_referrals_org_opened", "organisation", "opened_at"),
        Index("ix_referrals_opened", "opened_at"),
        Index("ix_referrals_service", "service_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_new_id)
    prompt_id: Mapped[str] = mapped_column(ForeignKey("prompts.id"), index=True)
    outcome_id: Mapped[int] = mapped_column(ForeignKey("prompt_outcomes.id"))
    organisation: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(100))
    person_id: Mapped[str] = mapped_column(String(100))  # pseudonymous, as on the prompt
    team: Mapped[str | None] = mapped_column(String(100))
    staff_id: Mapped[str | None] = mapped_column(String(100))  # who referred
    topic: Mapped[str] = mapped_column(String(40))
    rule_key: Mapped[str] = mapped_column(String(64))
    service_id: Mapped[str] = mapped_column(String(100))
    service_name: Mapped[str] = mapped_column(String(200))
    service_type: Mapped[str] = mapped_column(String(40))
    # requested -> accepted | declined | closed; accepted -> attended | did_not_attend | ...
    status: Mapped[str] = mapped_column(String(20), default="requested")
    # attended | did_not_attend, kept when the referral is later closed.
    attendance: Mapped[str | None] = mapped_column(String(20))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # First time the service took the person on (accepted, or straight to attended).
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ReferralStatusChange(Base):
    """Append-only history of a referral's status (the first row is `requested`)."""

    __tablename__ = "referral_status_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    referral_id: Mapped[str] = mapped_column(ForeignKey("referrals.id"), index=True)
    status: Mapped[str] = mapped_column(String(20))
    note: Mapped[str | None] = mapped_column(Text)  # free text: kept out of logs and reports
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    recorded_by: Mapped[str] = mapped_column(String(400))


class PersonalOutcome(Base):
    """The person's own view at one moment: each statement scored 1-5, null if not answered."""

    __tablename__ = "personal_outcomes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    referral_id: Mapped[str] = mapped_column(ForeignKey("referrals.id"), index=True)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_by: Mapped[str] = mapped_column(String(400))
    better_able_to_manage: Mapped[int | None] = mapped_column(SmallInteger)
    support_around_me: Mapped[int | None] = mapped_column(SmallInteger)
    hope_for_future: Mapped[int | None] = mapped_column(SmallInteger)
    know_what_helps: Mapped[int | None] = mapped_column(SmallInteger)
    involved_in_decisions: Mapped[int | None] = mapped_column(SmallInteger)
    able_to_articulate_needs: Mapped[int | None] = mapped_column(SmallInteger)
