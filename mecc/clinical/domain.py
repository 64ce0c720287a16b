"""Domain values shared by the rule language, the rule pack, evaluation and suppression.

Plain frozen dataclasses: nothing here knows about Flask, Celery or the database session.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

TOPICS = (
    "smoking", "alcohol", "physical_activity", "healthy_weight", "mental_wellbeing",
    "diabetes_prevention", "blood_pressure", "self_management", "rehabilitation",
    "frailty_falls", "carers", "care_planning", "social_connection", "money_advice",
)
KINDS = ("lifestyle_conversation", "self_management_referral", "social_prescribing")
INDICATORS = ("info", "warning", "critical")
RULE_STATUSES = ("draft", "active", "retired")
OUTCOMES = ("conversation_had", "referred", "declined", "not_now", "not_appropriate")
# Outcomes after which the same topic is not raised again within the rule's cooldown.
COOLDOWN_OUTCOMES = frozenset({"conversation_had", "referred"})


@dataclass(frozen=True)
class EvalContext:
    """What a rule expression can read about one contact.

    `facts` holds known facts only (absent means unknown; never None), including the facts the
    engine derives from the event (age, sex, ethnicity_group, postcode_district, setting,
    contact_type, staff_role). `conditions` maps each condition group the person has to its
    earliest known onset date, or None when no onset was given. `on` is the UTC date of the
    contact (occurred_at), against which "within N days" is measured. `medicines` are the
    medicine classes of the person's current medicines; `fact_dates` says when each fact was
    recorded, where the sender said (facts too old to use are not in `facts` at all).
    """

    facts: Mapping[str, Any]
    conditions: Mapping[str, date | None]
    on: date
    medicines: frozenset[str] = frozenset()
    fact_dates: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Preferences:
    opted_out: bool = False
    declined_topics: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ContactEvent:
    """The domain view of one stored contact event (NHS number never present here)."""

    id: str  # our uuid
    occurred_at: datetime  # timezone-aware, UTC
    organisation: str
    setting: str
    context: EvalContext
    preferences: Preferences = Preferences()
    staff_role: str | None = None
    staff_id: str | None = None
    team: str | None = None
    person_id: str = ""
    postcode_district: str | None = None


@dataclass(frozen=True)
class Source:
    label: str
    url: str | None = None


@dataclass(frozen=True)
class RuleDef:
    """One version of one rule, as administrators write it (see CONTRACT.md, Rules)."""

    key: str
    version: int
    title: str
    topic: str
    kind: str
    when: str
    priority: int
    summary: str  # template, <= 140 characters after rendering
    detail: str = ""  # markdown template
    indicator: str = "info"
    settings: frozenset[str] = frozenset()  # empty: all settings
    staff_roles: frozenset[str] = frozenset()  # empty: all roles
    # ODS codes of the organisations whose events the rule applies to; empty: every one.
    organisations: frozenset[str] = frozenset()
    cooldown_days: int = 180
    decline_days: int = 180
    suggestions: tuple[str, ...] = ()  # service types
    sources: tuple[Source, ...] = ()
    status: str = "draft"
    updated_by: str | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class PastPrompt:
    """A prompt from the person's history, for suppression.

    `contact_at` is the occurred_at of the contact the prompt was raised at: cooldowns and
    declines are measured from it, not from when an outcome was typed in. `status` is the
    prompt's latest outcome, or "new" / "deferred" when none was recorded.
    """

    rule_key: str
    topic: str
    contact_at: datetime
    status: str
    event_id: str = ""
    # The organisation whose contact raised it. Another organisation's history still
    # suppresses (suppression is person-centred) but is never described: no topic, outcome or
    # date of someone else's contact reaches this organisation. None: the caller's own
    # history (the dry-run's would-be prompts, unit tests).
    organisation: str | None = None


@dataclass(frozen=True)
class PersonHistory:
    prompts: tuple[PastPrompt, ...] = ()


@dataclass(frozen=True)
class Service:
    id: str
    name: str
    service_type: str
    areas: frozenset[str] = frozenset()  # postcode districts; empty: everywhere
    organisations: frozenset[str] = frozenset()  # ODS codes; empty: any organisation
    self_referral: bool = False
    contact: Mapping[str, str] = field(default_factory=dict)
    referral_url: str | None = None
    description: str = ""
