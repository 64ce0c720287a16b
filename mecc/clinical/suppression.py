"""Person-centred suppression: which matched rules become prompts at one contact.

The engine rules of CONTRACT.md ("Person-centred suppression"), applied after rules match and
before prompts are stored, in this order (each suppressed match keeps the first reason found):

a. ``setting`` / ``staff_role`` -- the rule limits itself to some settings or staff roles and
   this contact is not one of them (a rule limited to staff roles never shows at a contact whose
   staff role is not known).
b. ``opted_out`` -- the person opted out of prompts: nothing shows.
c. ``declined_topic`` -- the topic is in the person's declined topics;
   ``declined_recently`` -- a prompt on the topic was declined within the rule's
   ``decline_days``.
d. ``cooldown`` -- a prompt on the topic got ``conversation_had`` or ``referred`` within the
   rule's ``cooldown_days``.
e. ``same_day`` -- the same rule was already raised for the person on the same UTC day at
   another contact.
   ``history_elsewhere`` -- c, d or e, but only because of another organisation's contacts:
   the match is still suppressed (the person's wishes follow them), yet nothing about those
   contacts -- topic, outcome, date -- is told to this organisation, in the stored reason or
   a dry-run. Reasons from this organisation's own contacts come first.
f. ``same_topic`` -- two rules on one topic at one contact: the highest priority shows (ties go
   to the lower rule key) and the others are suppressed.
g. the per-contact cap keeps the ``max_prompts_per_contact`` highest priorities (ties go to the
   lower rule key); the rest are *deferred* -- stored and visible, not pushed, not suppressed.

Time is always measured against the event's ``occurred_at``, never the wall clock, so replaying
an old event gives the answer it got (or would have got) at the time.

Windows (cooldown and decline alike) count whole UTC calendar days. A past prompt raised at a
contact on day D with an N-day window suppresses the topic at a contact on day E when the past
contact is at or before this one and ``(E - D).days < N``: it suppresses days D .. D + N - 1 and
the prompt may show again from day D + N, at any time of that day. For example, a conversation
on 10 January with a 90-day cooldown suppresses the topic through 9 April and the prompt may
show again on 10 April (day 90); a 0-day window suppresses nothing. Outcomes count from the
contact the prompt was raised at (``PastPrompt.contact_at``), however late they were entered.

A history entry never suppresses an event that happened before it (replays and back-fills see
only what came earlier), and a prompt never suppresses a re-evaluation of its own event.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from mecc.clinical.domain import COOLDOWN_OUTCOMES, ContactEvent, PastPrompt, PersonHistory, RuleDef

DEFAULT_MAX_PROMPTS_PER_CONTACT = 3
REASON_CODES = (
    "setting", "staff_role", "opted_out", "declined_topic", "declined_recently", "cooldown",
    "same_day", "history_elsewhere", "same_topic",
)
HISTORY_ELSEWHERE = ("The person's history with another organisation means this prompt is not "
                     "raised at this contact.")


@dataclass(frozen=True)
class Candidate:
    """A matched rule that becomes a prompt at this contact: status "new" or "deferred"."""

    rule: RuleDef
    priority: int
    status: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": {"key": self.rule.key, "version": self.rule.version},
            "topic": self.rule.topic, "kind": self.rule.kind,
            "priority": self.priority, "status": self.status,
        }


@dataclass(frozen=True)
class Suppressed:
    """A matched rule that does not become a prompt, with why (code and a sentence)."""

    rule_key: str
    rule_version: int
    reason_code: str  # one of REASON_CODES
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": {"key": self.rule_key, "version": self.rule_version},
            "reason_code": self.reason_code, "reason": self.reason,
        }


@dataclass(frozen=True)
class SuppressionResult:
    shown: list[Candidate]
    deferred: list[Candidate]
    suppressed: list[Suppressed]


def rank(rule: RuleDef) -> tuple[int, str]:
    """Sort key: highest priority first, ties broken by rule key (ascending)."""
    return (-rule.priority, rule.key)


def as_utc(moment: datetime) -> datetime:
    """The same instant in UTC; a naive datetime (as SQLite returns them) is taken as UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def days_between(earlier: datetime, later: datetime) -> int:
    """Whole UTC calendar days from `earlier`'s date to `later`'s date."""
    return (as_utc(later).date() - as_utc(earlier).date()).days


def within_window(past_at: datetime, event_at: datetime, days: int) -> bool:
    """True when a contact at `past_at` falls in the `days`-day window looking back from `event_at`.

    The window is days D .. D + days - 1 where D is the past contact's UTC date, and only counts
    a past contact at or before this one (a later contact never suppresses an earlier one).
    """
    return as_utc(past_at) <= as_utc(event_at) and days_between(past_at, event_at) < days


def apply_suppression(
    event: ContactEvent,
    matched: Iterable[RuleDef],
    history: PersonHistory,
    *,
    max_prompts_per_contact: int = DEFAULT_MAX_PROMPTS_PER_CONTACT,
) -> SuppressionResult:
    """Split the rules that matched at `event` into shown, deferred and suppressed."""
    if max_prompts_per_contact < 0:
        raise ValueError("max_prompts_per_contact must be 0 or more")
    ordered = sorted(matched, key=rank)
    past = _PastSummary(event, history)
    suppressed: dict[str, Suppressed] = {}
    winners: list[RuleDef] = []
    winner_by_topic: dict[str, RuleDef] = {}
    for rule in ordered:  # in rank order, so the first survivor of each topic wins
        found = _person_reason(event, rule, past)
        if found is not None:
            suppressed[rule.key] = found
            continue
        winner = winner_by_topic.setdefault(rule.topic, rule)
        if winner is rule:
            winners.append(rule)
        else:
            suppressed[rule.key] = _suppressed(
                rule, "same_topic",
                f"{winner.key} (priority {winner.priority}) is raised on the same topic "
                f"({_topic(rule)}) at this contact; only one prompt per topic is shown.",
            )

    shown = [Candidate(r, r.priority, "new") for r in winners[:max_prompts_per_contact]]
    deferred = [Candidate(r, r.priority, "deferred") for r in winners[max_prompts_per_contact:]]
    return SuppressionResult(
        shown=shown, deferred=deferred,
        suppressed=[suppressed[r.key] for r in ordered if r.key in suppressed],
    )


class _Seen:
    """One organisation's side of a person's history, reduced to lookups per topic and rule."""

    def __init__(self) -> None:
        self.latest_decline: dict[str, PastPrompt] = {}
        self.latest_follow_up: dict[str, PastPrompt] = {}
        self.shown_today: set[str] = set()


class _PastSummary:
    """What the person's history says, reduced once per event, kept apart by organisation.

    Only prompts from contacts at or before this one count, and never this event's own (a
    re-evaluation of the same event must give the same answer). Within a topic the most recent
    decline or follow-up is the one that decides, since every window ends later for it.
    """

    def __init__(self, event: ContactEvent, history: PersonHistory) -> None:
        at = as_utc(event.occurred_at)
        self.today = at.date()
        self.own = _Seen()
        self.elsewhere = _Seen()
        for prompt in history.prompts:
            contact_at = as_utc(prompt.contact_at)
            if contact_at > at or (prompt.event_id and prompt.event_id == event.id):
                continue
            seen = self.own if prompt.organisation in (None, event.organisation) \
                else self.elsewhere
            if prompt.status == "declined":
                _keep_latest(seen.latest_decline, prompt)
            elif prompt.status in COOLDOWN_OUTCOMES:
                _keep_latest(seen.latest_follow_up, prompt)
            if prompt.status != "deferred" and contact_at.date() == self.today:
                seen.shown_today.add(prompt.rule_key)


def _keep_latest(latest: dict[str, PastPrompt], prompt: PastPrompt) -> None:
    current = latest.get(prompt.topic)
    if current is None or as_utc(prompt.contact_at) > as_utc(current.contact_at):
        latest[prompt.topic] = prompt


def _person_reason(event: ContactEvent, rule: RuleDef, past: _PastSummary) -> Suppressed | None:
    """The first of rules a-e that keeps `rule` from showing at `event`, if any."""
    if rule.settings and event.setting not in rule.settings:
        return _suppressed(
            rule, "setting",
            f"The rule is limited to the settings {_listed(rule.settings)}; this contact is in "
            f"{event.setting}.",
        )
    if rule.staff_roles and event.staff_role not in rule.staff_roles:
        role = event.staff_role or "not known"
        return _suppressed(
            rule, "staff_role",
            f"The rule is limited to the staff roles {_listed(rule.staff_roles)}; this "
            f"contact's staff role is {role}.",
        )
    if event.preferences.opted_out:
        return _suppressed(rule, "opted_out", "The person has opted out of MECC prompts.")
    if rule.topic in event.preferences.declined_topics:
        return _suppressed(
            rule, "declined_topic",
            f"The person has said they do not want to talk about {_topic(rule)}.",
        )
    own = _history_reason(event, rule, past.own, past.today)
    if own is not None:
        return own
    if _history_reason(event, rule, past.elsewhere, past.today) is not None:
        return _suppressed(rule, "history_elsewhere", HISTORY_ELSEWHERE)
    return None


def _history_reason(event: ContactEvent, rule: RuleDef, seen: _Seen,
                    today: date) -> Suppressed | None:
    """Rules c-e against one organisation's side of the history."""
    declined = seen.latest_decline.get(rule.topic)
    if declined is not None and within_window(declined.contact_at, event.occurred_at,
                                              rule.decline_days):
        return _suppressed(
            rule, "declined_recently",
            f"The person declined a prompt on {_topic(rule)} at a contact on "
            f"{_day(declined.contact_at)}; it is not raised again before "
            f"{_day(declined.contact_at, rule.decline_days)} ({rule.decline_days} days).",
        )
    done = seen.latest_follow_up.get(rule.topic)
    if done is not None and within_window(done.contact_at, event.occurred_at,
                                          rule.cooldown_days):
        outcome = done.status.replace("_", " ")
        return _suppressed(
            rule, "cooldown",
            f"A prompt on {_topic(rule)} at a contact on {_day(done.contact_at)} was followed "
            f"up ({outcome}); it is not repeated before "
            f"{_day(done.contact_at, rule.cooldown_days)} ({rule.cooldown_days} days).",
        )
    if rule.key in seen.shown_today:
        return _suppressed(
            rule, "same_day",
            f"This prompt was already raised for the person at another contact on {today}.",
        )
    return None


def _suppressed(rule: RuleDef, code: str, reason: str) -> Suppressed:
    return Suppressed(rule_key=rule.key, rule_version=rule.version, reason_code=code,
                      reason=reason)


def _topic(rule: RuleDef) -> str:
    return rule.topic.replace("_", " ")


def _listed(values: Iterable[str]) -> str:
    return ", ".join(sorted(values))


def _day(moment: datetime, plus_days: int = 0) -> date:
    return as_utc(moment).date() + timedelta(days=plus_days)
