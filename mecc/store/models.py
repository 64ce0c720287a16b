"""Database tables. The database is the record; Redis only carries work that can be re-sent."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from mecc.platform.db import Base, JSONType, UTCDateTime, utcnow


def new_id() -> str:
    return str(uuid.uuid4())


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100))
    # Public lookup part of the key (after the "mecc_" prefix); the secret part is only hashed.
    lookup: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    organisation: Mapped[str] = mapped_column(String(16))  # ODS code, or "*" for all
    scopes: Mapped[list[str]] = mapped_column(JSONType)
    callback_hosts: Mapped[list[str]] = mapped_column(JSONType, default=list)
    default_callback_url: Mapped[str | None] = mapped_column(String(2048))
    # Signs this key's webhooks (Standard Webhooks); shown once at creation.
    webhook_secret: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class User(Base):
    """A person who signs in to the pages: a role, and one organisation (or "*")."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    email: Mapped[str] = mapped_column(String(254), unique=True)  # stored lower-case
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(30))
    organisation: Mapped[str] = mapped_column(String(16))  # ODS code, or "*" for all
    # Argon2id; null for people who sign in only through the organisation's OpenID provider.
    password_hash: Mapped[str | None] = mapped_column(String(200))
    # The OpenID provider's `sub`, bound at the first sign-in with it: later sign-ins must
    # present the same subject, so an email address reassigned at the provider is not enough.
    oidc_subject: Mapped[str | None] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_signed_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (
        # Idempotency is per organisation: one organisation's ids never collide with, or
        # reveal, another's.
        UniqueConstraint("organisation", "source", "event_id",
                         name="uq_events_organisation_source_event_id"),
        Index("ix_events_status_next", "status", "next_attempt_at"),
        Index("ix_events_person", "source", "person_id"),
        Index("ix_events_org_occurred", "organisation", "occurred_at"),
        # The labels the erasure sweep finds (partial on PostgreSQL, the production database).
        Index("ix_events_display_held", "occurred_at",
              postgresql_where="person_display IS NOT NULL"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    source: Mapped[str] = mapped_column(String(100))
    event_id: Mapped[str] = mapped_column(String(200))
    # Keyed hash of the canonical request body: same key + other body answers 409.
    body_hash: Mapped[str] = mapped_column(String(64))
    organisation: Mapped[str] = mapped_column(String(16))
    setting: Mapped[str] = mapped_column(String(40))
    contact_type: Mapped[str | None] = mapped_column(String(40))
    staff_id: Mapped[str | None] = mapped_column(String(100))
    staff_role: Mapped[str | None] = mapped_column(String(40))
    team: Mapped[str | None] = mapped_column(String(100))
    person_id: Mapped[str] = mapped_column(String(100))
    # HMAC of the NHS number with MECC_PSEUDONYM_KEY: links one person across sources.
    person_key: Mapped[str | None] = mapped_column(String(64), index=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The validated event without the NHS number (never stored in clear) or person.display:
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    # its one copy, erased after the contact (mecc.intake.display).
    person_display: Mapped[str | None] = mapped_column(String(100))
    callback_url: Mapped[str | None] = mapped_column(String(2048))
    api_key_id: Mapped[str | None] = mapped_column(ForeignKey("api_keys.id"))
    # Outbox state: queued -> processing -> evaluated | failed.
    status: Mapped[str] = mapped_column(String(20), default="queued")
    status_reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # When the relay should (re)send a queued event, or reclaim a processing one (its lease).
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set by the worker that claimed the event; its final write checks it is still the owner.
    claim_token: Mapped[str | None] = mapped_column(String(36))
    evaluated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Rule(Base):
    """One rule's state: which version is live. `revision` moves on every change."""

    __tablename__ = "rules"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(10), default="draft")  # draft|active|retired
    active_version: Mapped[int | None] = mapped_column(Integer)
    latest_version: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RuleVersion(Base):
    __tablename__ = "rule_versions"
    __table_args__ = (UniqueConstraint("key", "version", name="uq_rule_versions_key_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(10), default="draft")
    body: Mapped[dict[str, Any]] = mapped_column(JSONType)
    updated_by: Mapped[str | None] = mapped_column(String(400))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RuleApproval(Base):
    """A request to publish or retire a rule version, waiting for a second person's approval.

    At most one is pending per rule (a newer request supersedes it). The version goes live only
    when someone other than the requester approves; until then prompts are unchanged.
    """

    __tablename__ = "rule_approvals"
    __table_args__ = (Index("ix_rule_approvals_key_status", "key", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(10))  # publish | retire
    # pending | approved | rejected | superseded
    status: Mapped[str] = mapped_column(String(12), default="pending")
    # Who asked, as the audit log names them, and their identity (key or user id) for the
    # "never your own change" check.
    requested_by: Mapped[str] = mapped_column(String(400))
    requester: Mapped[str] = mapped_column(String(100))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    decided_by: Mapped[str | None] = mapped_column(String(400))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reason: Mapped[str | None] = mapped_column(Text)


# What reports group and count prompts by (mecc.reports).
REPORT_COLUMNS = ["status", "topic", "rule_key", "setting", "organisation", "team", "staff_id",
                  "ethnicity_group", "age_band", "sex", "postcode_district"]


class Prompt(Base):
    __tablename__ = "prompts"
    __table_args__ = (
        # A redelivered evaluation task cannot create a second prompt for the same rule.
        UniqueConstraint("event_id", "rule_key", name="uq_prompts_event_rule"),
        Index("ix_prompts_person", "source", "person_id"),
        Index("ix_prompts_org_created", "organisation", "created_at"),
        # Reports select prompts by the contact's time and group them by these columns: on
        # PostgreSQL the index carries them (INCLUDE), so a report over a million prompts reads
        # the index alone, not the wide rows (bench/reports.py).
        Index("ix_prompts_contact_report", "contact_at", postgresql_include=REPORT_COLUMNS),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id"), index=True)
    source: Mapped[str] = mapped_column(String(100))
    person_id: Mapped[str] = mapped_column(String(100))
    person_key: Mapped[str | None] = mapped_column(String(64), index=True)
    organisation: Mapped[str] = mapped_column(String(16))
    setting: Mapped[str] = mapped_column(String(40))
    team: Mapped[str | None] = mapped_column(String(100))
    staff_id: Mapped[str | None] = mapped_column(String(100))
    rule_key: Mapped[str] = mapped_column(String(64))
    rule_version: Mapped[int] = mapped_column(Integer)
    topic: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(40))
    priority: Mapped[int] = mapped_column(Integer)
    indicator: Mapped[str] = mapped_column(String(10))
    summary: Mapped[str] = mapped_column(String(200))
    detail: Mapped[str] = mapped_column(Text)
    suggestions: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    sources: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    # What the rule read: [{"fact", "value", "recorded_at"}] (null for prompts made before it).
    evidence: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType, nullable=True,
                                                                  default=list)
    # new | deferred | the latest outcome
    status: Mapped[str] = mapped_column(String(20))
    # The contact's occurred_at: cooldowns and declines count from it.
    contact_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The person as recorded at this contact, for the equity reports (mecc.reports): never a
    # display label or an NHS number. Null when the event did not say.
    age_band: Mapped[str | None] = mapped_column(String(8))
    sex: Mapped[str | None] = mapped_column(String(20))
    ethnicity_group: Mapped[str | None] = mapped_column(String(40))
    postcode_district: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PromptOutcome(Base):
    """Append-only history of what staff recorded; the latest is the prompt's status."""

    __tablename__ = "prompt_outcomes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    prompt_id: Mapped[str] = mapped_column(ForeignKey("prompts.id"), index=True)
    outcome: Mapped[str] = mapped_column(String(20))
    staff_id: Mapped[str | None] = mapped_column(String(100))
    service_id: Mapped[str | None] = mapped_column(String(100))
    note: Mapped[str | None] = mapped_column(Text)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    recorded_by: Mapped[str | None] = mapped_column(String(100))


class SuppressedMatch(Base):
    __tablename__ = "suppressed_matches"
    __table_args__ = (
        UniqueConstraint("event_id", "rule_key", name="uq_suppressed_event_rule"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id"), index=True)
    rule_key: Mapped[str] = mapped_column(String(64))
    rule_version: Mapped[int] = mapped_column(Integer)
    reason_code: Mapped[str] = mapped_column(String(40))
    reason: Mapped[str] = mapped_column(Text)


class Service(Base):
    __tablename__ = "services"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    service_type: Mapped[str] = mapped_column(String(40), index=True)
    areas: Mapped[list[str]] = mapped_column(JSONType, default=list)
    organisations: Mapped[list[str]] = mapped_column(JSONType, default=list)
    self_referral: Mapped[bool] = mapped_column(Boolean, default=False)
    contact: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    referral_url: Mapped[str | None] = mapped_column(String(2048))
    description: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditEntry(Base):
    """Append-only: rule changes, key changes, prompt outcomes (who, when, what)."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_entity_key", "entity", "entity_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # A person's name and email, or a key's name and id: room for both at their longest.
    actor: Mapped[str] = mapped_column(String(400))
    entity: Mapped[str] = mapped_column(String(20))
    entity_key: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(40))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class PushMessage(Base):
    """Every message pushed to staff screens, numbered: SSE `id:` and Last-Event-ID replay.

    Written in the transaction that creates the prompt or records the outcome, so a reconnecting
    screen can always catch up from the database, whatever Redis pub/sub dropped.
    """

    __tablename__ = "push_messages"
    __table_args__ = (Index("ix_push_messages_org_id", "organisation", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(20))  # prompt | prompt-updated
    prompt_id: Mapped[str] = mapped_column(ForeignKey("prompts.id"))
    organisation: Mapped[str] = mapped_column(String(16))
    team: Mapped[str | None] = mapped_column(String(100))
    staff_id: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookEndpoint(Base):
    """A callback URL we deliver to; a 410 answer disables it."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (UniqueConstraint("api_key_id", "url", name="uq_webhook_endpoints_key_url"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    api_key_id: Mapped[str | None] = mapped_column(ForeignKey("api_keys.id"))
    url: Mapped[str] = mapped_column(String(2048))
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookDelivery(Base):
    """One event's prompts to one endpoint: retried with backoff, then parked as failed."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # A redelivered evaluation task cannot queue a second delivery.
        UniqueConstraint("event_id", "endpoint_id", name="uq_webhook_deliveries_event_endpoint"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id"), index=True)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id"))
    organisation: Mapped[str] = mapped_column(String(16))
    # pending | delivering | succeeded | failed | disabled
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    claim_token: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Backtest(Base):
    """One back-test of one rule version over stored events: queued, run by a worker, polled."""

    __tablename__ = "backtests"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    rule_key: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    days: Mapped[int] = mapped_column(Integer)
    # The events it may scan: one ODS code, or "*" (asked by a key bound to all organisations).
    organisation: Mapped[str] = mapped_column(String(16))
    # queued | running | done | failed
    status: Mapped[str] = mapped_column(String(10), default="queued")
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    error: Mapped[str | None] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(String(100))  # the API key's id
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class CdsClient(Base):
    """A CDS Hooks client allowed to call /cds-services: its JWT issuer and public JWK Set.

    Registered with `mecc cds-clients add`; keys are never fetched over the network.
    """

    __tablename__ = "cds_clients"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    iss: Mapped[str] = mapped_column(String(255), unique=True)
    jwks: Mapped[dict[str, Any]] = mapped_column(JSONType)
    organisation: Mapped[str] = mapped_column(String(16))  # ODS code, or "*" for all
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Hosts (HOST or HOST:PORT) of the FHIR servers this client's calls may have the service
    # fetch missing prefetch from (CDS Hooks `fhirServer`); empty: nothing is fetched.
    fhir_servers: Mapped[list[str]] = mapped_column(JSONType, default=list,
                                                    server_default="[]")


class UsedJti(Base):
    """JWT ids already presented by a CDS client: a second use is a replay and is refused.

    Kept until the token could no longer be accepted anyway (`exp`), then purged.
    """

    __tablename__ = "used_jtis"
    __table_args__ = (UniqueConstraint("iss", "jti", name="uq_used_jtis_iss_jti"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    iss: Mapped[str] = mapped_column(String(255))
    jti: Mapped[str] = mapped_column(String(255))
    exp: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


# Referrals and personal outcomes live in their own module (this one stays readable); importing
# them here registers their tables wherever the models are loaded (Alembic, tests).
from mecc.store.referrals import (  # noqa: E402, F401
    PersonalOutcome,
    Referral,
    ReferralStatusChange,
)
