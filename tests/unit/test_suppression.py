"""Person-centred suppression: each engine rule over a sequence of events in time."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from mecc.clinical.domain import (
    ContactEvent,
    EvalContext,
    PastPrompt,
    PersonHistory,
    Preferences,
    RuleDef,
)
from mecc.clinical.suppression import (
    REASON_CODES,
    SuppressionResult,
    apply_suppression,
    days_between,
    within_window,
)


def rule(key: str = "smoking-vba", topic: str = "smoking", priority: int = 50, *,
         cooldown_days: int = 90, decline_days: int = 180, settings: tuple[str, ...] = (),
         staff_roles: tuple[str, ...] = ()) -> RuleDef:
    return RuleDef(
        key=key, version=1, title=key, topic=topic, kind="lifestyle_conversation", when="true",
        priority=priority, summary=key, cooldown_days=cooldown_days, decline_days=decline_days,
        settings=frozenset(settings), staff_roles=frozenset(staff_roles), status="active",
    )


def at(text: str) -> datetime:
    """An aware datetime; a bare date means midnight UTC."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def event(when: str = "2026-03-01T10:00:00", *, event_id: str = "ev-now",
          setting: str = "general_practice", staff_role: str | None = "practice_nurse",
          opted_out: bool = False, declined: tuple[str, ...] = ()) -> ContactEvent:
    moment = at(when)
    return ContactEvent(
        id=event_id, occurred_at=moment, organisation="Y02345", setting=setting,
        context=EvalContext(facts={}, conditions={}, on=moment.astimezone(UTC).date()),
        preferences=Preferences(opted_out=opted_out, declined_topics=frozenset(declined)),
        staff_role=staff_role, person_id="p-1",
    )


def past(when: str, status: str, *, rule_key: str = "smoking-vba", topic: str = "smoking",
         event_id: str = "ev-past", organisation: str | None = None) -> PastPrompt:
    return PastPrompt(rule_key=rule_key, topic=topic, contact_at=at(when), status=status,
                      event_id=event_id, organisation=organisation)


def run(ev: ContactEvent, rules: list[RuleDef], *prompts: PastPrompt,
        cap: int = 3) -> SuppressionResult:
    return apply_suppression(ev, rules, PersonHistory(tuple(prompts)),
                             max_prompts_per_contact=cap)


def shown_keys(result: SuppressionResult) -> list[str]:
    return [c.rule.key for c in result.shown]


def reasons(result: SuppressionResult) -> dict[str, str]:
    return {s.rule_key: s.reason_code for s in result.suppressed}


# --- a. the rule's own setting and staff-role limits ---------------------------------------------

@pytest.mark.parametrize(("setting", "role", "code"), [
    ("general_practice", "practice_nurse", None),
    ("community_pharmacy", "practice_nurse", "setting"),
    ("general_practice", "receptionist", "staff_role"),
    ("general_practice", None, "staff_role"),  # role unknown: a limited rule does not show
    ("dental", None, "setting"),  # the setting limit is checked first
])
def test_rule_limits_to_settings_and_staff_roles(setting, role, code):
    limited = rule(settings=("general_practice",), staff_roles=("practice_nurse", "gp"))
    result = run(event(setting=setting, staff_role=role), [limited])
    if code is None:
        assert shown_keys(result) == ["smoking-vba"]
    else:
        assert reasons(result) == {"smoking-vba": code}
        assert result.shown == []


def test_empty_limits_mean_every_setting_and_role():
    result = run(event(setting="dental", staff_role=None), [rule()])
    assert shown_keys(result) == ["smoking-vba"]


def test_staff_role_reason_says_the_role_is_unknown():
    result = run(event(staff_role=None), [rule(staff_roles=("gp",))])
    assert "not known" in result.suppressed[0].reason


# --- b. opted out --------------------------------------------------------------------------------

def test_opted_out_suppresses_every_match_with_its_reason():
    rules = [rule("a", "smoking"), rule("b", "alcohol"), rule("c", "carers", settings=("dental",))]
    result = run(event(opted_out=True), rules)
    assert result.shown == [] and result.deferred == []
    assert reasons(result) == {"a": "opted_out", "b": "opted_out", "c": "setting"}


# --- c. declines ---------------------------------------------------------------------------------

def test_declined_topic_preference_suppresses_only_that_topic():
    result = run(event(declined=("alcohol",)), [rule("a", "alcohol"), rule("s", "smoking")])
    assert reasons(result) == {"a": "declined_topic"}
    assert shown_keys(result) == ["s"]


@pytest.mark.parametrize(("when", "suppressed"), [
    ("2026-01-10T09:00:00", True),   # the same contact time, another event
    ("2026-01-10T23:59:00", True),   # later the same day
    ("2026-07-08T23:59:59", True),   # day 179 of 180
    ("2026-07-09T00:00:00", False),  # day 180: may show again
    ("2026-07-09T08:59:00", False),  # day 180, before the time of day of the decline
    ("2026-07-10T12:00:00", False),
    ("2026-01-10T08:59:00", False),  # replay of an earlier contact the same day
    ("2025-12-01T12:00:00", False),  # replay of a contact before the decline
])
def test_declined_outcome_suppresses_the_topic_for_decline_days(when, suppressed):
    declined = past("2026-01-10T09:00:00", "declined", topic="smoking", rule_key="other-rule")
    result = run(event(when), [rule(decline_days=180)], declined)
    assert reasons(result) == ({"smoking-vba": "declined_recently"} if suppressed else {})


def test_decline_window_is_the_rules_own_decline_days():
    declined = past("2026-01-10T09:00:00", "declined", rule_key="other-rule")
    assert run(event("2026-01-20T09:00:00"), [rule(decline_days=10)], declined).shown
    assert not run(event("2026-01-19T23:00:00"), [rule(decline_days=10)], declined).shown
    assert run(event("2026-01-10T10:00:00"), [rule(decline_days=0)], declined).shown


def test_decline_reason_names_the_dates():
    declined = past("2026-01-10T09:00:00", "declined")
    result = run(event("2026-02-01T09:00:00"), [rule(decline_days=180)], declined)
    assert "2026-01-10" in result.suppressed[0].reason
    assert "2026-07-09" in result.suppressed[0].reason


# --- d. cooldown ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("when", "suppressed"), [
    ("2026-01-10T09:00:00", True),
    ("2026-04-09T23:59:59", True),   # 10 Jan + 89 days: still within the 90-day cooldown
    ("2026-04-10T00:00:00", False),  # day 90: shows again
    ("2026-04-10T08:00:00", False),  # whole calendar days: time of day does not matter
    ("2026-05-01T09:00:00", False),
    ("2026-01-09T09:00:00", False),  # back-fill of an earlier contact
])
@pytest.mark.parametrize("outcome", ["conversation_had", "referred"])
def test_cooldown_after_conversation_or_referral(when, suppressed, outcome):
    done = past("2026-01-10T09:00:00", outcome)
    result = run(event(when), [rule(cooldown_days=90)], done)
    assert reasons(result) == ({"smoking-vba": "cooldown"} if suppressed else {})


@pytest.mark.parametrize("status", ["new", "deferred", "not_now", "not_appropriate"])
def test_other_statuses_do_not_start_a_cooldown(status):
    result = run(event("2026-01-11T09:00:00"), [rule()], past("2026-01-10T09:00:00", status))
    assert shown_keys(result) == ["smoking-vba"]


def test_cooldown_is_by_topic_and_uses_the_matching_rules_days():
    done = past("2026-01-10T09:00:00", "conversation_had", rule_key="healthy-weight",
                topic="healthy_weight")
    referral = rule("weight-referral", "healthy_weight", cooldown_days=30)
    other = rule("smoking-vba", "smoking", priority=10)
    result = run(event("2026-02-08T09:00:00"), [referral, other], done)  # day 29
    assert reasons(result) == {"weight-referral": "cooldown"}
    result = run(event("2026-02-09T09:00:00"), [referral, other], done)  # day 30
    assert shown_keys(result) == ["weight-referral", "smoking-vba"]


def test_cooldown_counts_from_the_contact_not_the_outcome_time():
    # The outcome for the 10 January contact may be typed in weeks later; PastPrompt carries the
    # contact time, so the window still ends on 10 April.
    done = past("2026-01-10T09:00:00", "conversation_had")
    assert run(event("2026-04-10T09:00:00"), [rule(cooldown_days=90)], done).shown


def test_cooldown_across_a_leap_day():
    done = past("2028-02-01T12:00:00", "conversation_had")
    assert not run(event("2028-03-01T12:00:00"), [rule(cooldown_days=30)], done).shown
    assert run(event("2028-03-02T00:00:00"), [rule(cooldown_days=30)], done).shown


def test_naive_history_times_are_taken_as_utc():
    naive = PastPrompt("smoking-vba", "smoking", datetime(2026, 1, 10, 9), "conversation_had")
    assert reasons(run(event("2026-01-11T09:00:00"), [rule()], naive)) == {
        "smoking-vba": "cooldown"}


def test_windows_are_measured_in_utc_days():
    # 00:30 at +01:00 on 11 January is 23:30 UTC on 10 January: still day 0 of the window.
    done = past("2026-01-01T09:00:00", "conversation_had")
    late = event("2026-01-11T00:30:00+01:00")
    assert reasons(run(late, [rule(cooldown_days=10)], done)) == {"smoking-vba": "cooldown"}
    assert run(event("2026-01-11T00:30:00+00:00"), [rule(cooldown_days=10)], done).shown


# --- e. same rule, same day ----------------------------------------------------------------------

@pytest.mark.parametrize(("past_when", "status", "past_event", "suppressed"), [
    ("2026-03-01T08:00:00", "new", "ev-1", True),
    ("2026-03-01T00:00:00", "not_now", "ev-1", True),
    ("2026-03-01T10:00:00", "new", "ev-1", True),    # same instant, another event
    ("2026-03-01T08:00:00", "deferred", "ev-1", False),  # it was never shown
    ("2026-02-28T23:59:59", "new", "ev-1", False),   # the day before
    ("2026-03-01T11:00:00", "new", "ev-1", False),   # later the same day: replay is unaffected
    ("2026-03-01T08:00:00", "new", "ev-now", False),  # this very event, evaluated again
])
def test_same_rule_same_day(past_when, status, past_event, suppressed):
    earlier = past(past_when, status, event_id=past_event)
    result = run(event("2026-03-01T10:00:00"), [rule(cooldown_days=0)], earlier)
    assert reasons(result) == ({"smoking-vba": "same_day"} if suppressed else {})


def test_same_day_is_per_rule_not_per_topic():
    earlier = past("2026-03-01T08:00:00", "new", rule_key="other", topic="smoking")
    assert run(event("2026-03-01T10:00:00"), [rule(cooldown_days=0)], earlier).shown


def test_same_day_uses_the_utc_calendar_day():
    earlier = past("2026-06-01T22:30:00", "new")
    # 00:30 at +02:00 on 2 June is 22:30 UTC on 1 June.
    assert reasons(run(event("2026-06-02T00:30:00+02:00"), [rule()], earlier)) == {
        "smoking-vba": "same_day"}
    assert run(event("2026-06-02T00:30:00+00:00"), [rule(cooldown_days=0)], earlier).shown


def test_own_event_history_never_suppresses_a_re_evaluation():
    own = past("2026-03-01T10:00:00", "conversation_had", event_id="ev-now")
    assert shown_keys(run(event(), [rule()], own)) == ["smoking-vba"]


# --- f. one prompt per topic ---------------------------------------------------------------------

def test_same_topic_keeps_the_highest_priority():
    high, low = rule("b-high", "alcohol", 95), rule("a-low", "alcohol", 78)
    result = run(event(), [low, high])
    assert shown_keys(result) == ["b-high"]
    assert reasons(result) == {"a-low": "same_topic"}
    assert "b-high" in result.suppressed[0].reason


def test_same_topic_tie_goes_to_the_lower_key():
    result = run(event(), [rule("zeta", "rehabilitation", 72), rule("alpha", "rehabilitation", 72)])
    assert shown_keys(result) == ["alpha"]
    assert reasons(result) == {"zeta": "same_topic"}


def test_same_topic_winner_is_chosen_among_prompts_that_survive():
    high = rule("high", "blood_pressure", 90, staff_roles=("gp",))
    low = rule("low", "blood_pressure", 10)
    result = run(event(staff_role="receptionist"), [high, low])
    assert shown_keys(result) == ["low"]
    assert reasons(result) == {"high": "staff_role"}


def test_same_topic_loser_is_suppressed_even_when_the_winner_is_deferred():
    rules = [rule("a", "t1", 90), rule("b", "t2", 80), rule("c", "t3", 70), rule("d", "t3", 60)]
    result = run(event(), rules, cap=2)
    assert shown_keys(result) == ["a", "b"]
    assert [c.rule.key for c in result.deferred] == ["c"]
    assert reasons(result) == {"d": "same_topic"}


# --- g. per-contact cap --------------------------------------------------------------------------

def test_cap_keeps_highest_priorities_and_defers_the_rest():
    rules = [rule(f"r{p}", f"topic{p}", p) for p in (10, 90, 50, 70, 30)]
    result = run(event(), rules, cap=3)
    assert shown_keys(result) == ["r90", "r70", "r50"]
    assert [c.rule.key for c in result.deferred] == ["r30", "r10"]
    assert {c.status for c in result.shown} == {"new"}
    assert {c.status for c in result.deferred} == {"deferred"}
    assert result.suppressed == []
    assert [c.priority for c in result.shown] == [90, 70, 50]


def test_cap_ties_are_broken_by_rule_key():
    rules = [rule(key, f"t-{key}", 72) for key in ("pulmonary", "cardiac", "structured", "alpha")]
    result = run(event(), rules + [rule("top", "t-top", 99)], cap=3)
    assert shown_keys(result) == ["top", "alpha", "cardiac"]
    assert [c.rule.key for c in result.deferred] == ["pulmonary", "structured"]


def test_cap_is_applied_after_suppression():
    rules = [rule(f"r{p}", f"topic{p}", p) for p in (90, 80, 70, 60)]
    result = run(event(declined=("topic90",)), rules, cap=3)
    assert shown_keys(result) == ["r80", "r70", "r60"]
    assert result.deferred == []


def test_cap_of_zero_defers_everything_and_negative_is_refused():
    result = run(event(), [rule("a", "x"), rule("b", "y")], cap=0)
    assert result.shown == [] and len(result.deferred) == 2
    with pytest.raises(ValueError, match="max_prompts_per_contact"):
        run(event(), [rule()], cap=-1)


# --- ordering, precedence, output ----------------------------------------------------------------

def test_first_reason_wins_in_the_documented_order():
    ev = event("2026-03-01T10:00:00", declined=("smoking",))
    history = (past("2026-03-01T08:00:00", "conversation_had"),
               past("2026-02-01T08:00:00", "declined"))
    assert reasons(run(ev, [rule()], *history)) == {"smoking-vba": "declined_topic"}
    ev = event("2026-03-01T10:00:00")
    assert reasons(run(ev, [rule()], *history)) == {"smoking-vba": "declined_recently"}
    assert reasons(run(ev, [rule()], history[0])) == {"smoking-vba": "cooldown"}


def test_every_suppression_has_a_known_code_and_a_sentence():
    history = (past("2026-02-27T08:00:00", "declined", topic="alcohol", rule_key="x"),
               past("2026-02-27T08:00:00", "referred", topic="carers", rule_key="y"),
               past("2026-03-01T08:00:00", "new", rule_key="same", topic="money_advice"))
    rules = [
        rule("set", "t1", settings=("dental",)), rule("role", "t2", staff_roles=("gp",)),
        rule("dec", "t3"), rule("recent", "alcohol"), rule("cool", "carers"),
        rule("same", "money_advice", cooldown_days=0), rule("topic-a", "t9", 60),
        rule("topic-b", "t9", 40),
    ]
    result = run(event(declined=("t3",)), rules, *history)
    assert reasons(result) == {
        "set": "setting", "role": "staff_role", "dec": "declined_topic",
        "recent": "declined_recently", "cool": "cooldown", "same": "same_day",
        "topic-b": "same_topic",
    }
    for item in result.suppressed:
        assert item.reason_code in REASON_CODES
        assert item.reason.endswith(".") and len(item.reason) > 20
        assert item.to_dict()["rule"] == {"key": item.rule_key, "version": 1}
    assert shown_keys(result) == ["topic-a"]


# --- another organisation's history (issue 13, finding 1) ----------------------------------------

ELSEWHERE = "A81001"


@pytest.mark.parametrize("history", [
    (past("2026-02-20T08:00:00", "declined", organisation=ELSEWHERE),),
    (past("2026-02-20T08:00:00", "referred", organisation=ELSEWHERE),),
    (past("2026-03-01T08:00:00", "new", organisation=ELSEWHERE),),
])
def test_another_organisations_history_suppresses_without_saying_what_it_was(history):
    result = run(event(), [rule()], *history)
    assert reasons(result) == {"smoking-vba": "history_elsewhere"}
    text = result.suppressed[0].reason
    for revealing in ("smoking", "2026", "declin", "referred", "followed"):
        assert revealing not in text, text


def test_the_organisations_own_history_keeps_its_specific_reason():
    history = (past("2026-02-20T08:00:00", "declined", organisation=ELSEWHERE),
               past("2026-02-25T08:00:00", "conversation_had", organisation="Y02345"))
    assert reasons(run(event(), [rule()], *history)) == {"smoking-vba": "cooldown"}


def test_another_organisations_history_outside_its_window_suppresses_nothing():
    old = past("2025-01-01T08:00:00", "declined", organisation=ELSEWHERE)
    assert shown_keys(run(event(), [rule()], old)) == ["smoking-vba"]


def test_result_does_not_depend_on_input_order():
    rules = [rule(f"r{i}", f"t{i % 3}", (i * 37) % 5) for i in range(9)]
    forward = run(event(), rules, cap=2)
    backward = run(event(), list(reversed(rules)), cap=2)
    assert forward == backward


def test_window_helpers():
    assert days_between(at("2026-01-10T23:00:00"), at("2026-01-11T01:00:00")) == 1
    assert within_window(at("2026-01-10T09:00:00"), at("2026-04-09T23:00:00"), 90)
    assert not within_window(at("2026-01-10T09:00:00"), at("2026-04-10T00:00:00"), 90)
    assert not within_window(at("2026-01-10T09:00:00"), at("2026-01-10T08:00:00"), 90)
    assert within_window(datetime(2026, 1, 10, 9), at("2026-01-10T09:00:00"), 1)
    plus_one = datetime(2026, 1, 10, 0, 30, tzinfo=timezone(timedelta(hours=1)))
    assert days_between(plus_one, at("2026-01-10T00:00:00")) == 1  # 23:30 UTC on 9 January
    assert date(2026, 1, 10) + timedelta(days=90) == date(2026, 4, 10)


# --- replay ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(5))
def test_replaying_a_timeline_against_the_full_history_gives_the_same_answers(seed):
    """Evaluate a person's contacts in order, then replay each against the complete history."""
    rng = random.Random(seed)  # noqa: S311 - test data, not security
    rules = [rule("smoke", "smoking", 90, cooldown_days=30, decline_days=60),
             rule("alc-brief", "alcohol", 78, cooldown_days=45, decline_days=90),
             rule("alc-spec", "alcohol", 95, cooldown_days=45, decline_days=90),
             rule("weight", "healthy_weight", 80, cooldown_days=20, decline_days=40)]
    start = at("2026-01-01T08:00:00")
    timeline = sorted(
        (start + timedelta(hours=rng.randint(0, 24 * 200)), f"ev-{n:02}",
         rng.sample(rules, rng.randint(1, len(rules))))
        for n in range(40)
    )
    history: list[PastPrompt] = []
    first = {}
    for moment, event_id, matched in timeline:
        result = run(event(moment.isoformat(), event_id=event_id), matched, *history, cap=1)
        first[event_id] = result
        for candidate in result.shown:
            status = rng.choice(["new", "conversation_had", "referred", "declined", "not_now"])
            history.append(PastPrompt(candidate.rule.key, candidate.rule.topic, moment, status,
                                      event_id))
        history.extend(PastPrompt(c.rule.key, c.rule.topic, moment, "deferred", event_id)
                       for c in result.deferred)
    codes = {s.reason_code for r in first.values() for s in r.suppressed}
    assert {"cooldown", "declined_recently"} <= codes, codes
    for moment, event_id, matched in reversed(timeline):
        again = run(event(moment.isoformat(), event_id=event_id), matched, *history, cap=1)
        assert again == first[event_id], event_id
