"""The rule sets of bench/rules.py: the 17 default rules varied into 20, 200 or 2,000, each
with a hand-written Python check (the floor), from one template per default rule.

A template returns (the rule's `when` text, the hand-written check testing the same thing
with plain dict lookups and comparisons, the fact the check is filed under or None).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

from mecc.clinical.catalogue import Catalogue
from mecc.clinical.domain import RuleDef
from mecc.clinical.suppression import rank

Check = Callable[[dict[str, Any], dict[str, Any], date], bool]


NUMERIC: dict[str, list[Any]] = {  # fact -> plausible thresholds
    "audit": [8, 12, 16, 20, 25], "audit_c": [3, 4, 5, 6, 8], "phq2": [2, 3, 4],
    "gad2": [2, 3, 4], "ucla3": [5, 6, 7], "systolic_bp": [130, 135, 140, 150, 160, 180],
    "diastolic_bp": [80, 85, 90, 100, 110], "activity_minutes_per_week": [30, 60, 90, 150],
    "bmi": [25, 27.5, 30, 35, 40], "hba1c_mmol_mol": [42, 48, 53, 58],
}
RANGES: dict[str, list[tuple[Any, Any]]] = {  # fact -> plausible (low, high) bands
    "hba1c_mmol_mol": [(42, 47), (48, 52), (53, 58)], "bmi": [(25, 29.9), (30, 34.9)],
    "systolic_bp": [(120, 139), (140, 159)], "audit": [(8, 15), (16, 19)],
    "audit_c": [(3, 4), (5, 7)], "diastolic_bp": [(80, 89), (90, 99)],
}
STRINGS: dict[str, list[str]] = {
    "smoking_status": ["current", "ex", "never"],
    "gppaq": ["inactive", "moderately_inactive", "moderately_active", "active"],
    "efi_category": ["mild", "moderate", "severe"],
}
BOOLS = ["is_carer", "financial_concern", "lives_alone"]
GROUPS = ["diabetes_type1", "diabetes_type2", "copd", "asthma", "heart_failure",
          "coronary_heart_disease", "hypertension", "stroke_tia", "ckd", "atrial_fibrillation",
          "depression", "anxiety", "dementia", "cancer", "osteoarthritis"]
AGES = [12, 16, 18, 18, 18, 25, 40, 50, 65]
HIGHER_RISK = ("south_asian", "chinese", "other_asian", "middle_eastern", "black_african",
               "black_caribbean")
HIGHER_RISK_TEXT = ", ".join(f"'{e}'" for e in HIGHER_RISK)


def _ge(name: str, k: Any) -> Callable[[dict[str, Any]], bool]:
    def test(f: dict[str, Any]) -> bool:
        v = f.get(name)
        return v is not None and v >= k
    return test


def t_age_and_score(r: random.Random, default: bool) -> tuple[str, Check, str | None]:
    """alcohol-specialist-referral: age >= 18 && audit >= 20."""
    a, x, t = (18, "audit", 20) if default else (r.choice(AGES), *_numeric(r))

    def check(f: dict[str, Any], c: dict[str, Any], on: date) -> bool:
        v = f.get(x)
        if v is None or v < t:
            return False
        age = f.get("age")
        return age is not None and age >= a
    return f"age >= {a} && {x} >= {t}", check, x


def t_age_and_status(r: random.Random, default: bool) -> tuple[str, Check, str | None]:
    """smoking-very-brief-advice: age >= 12 && smoking_status == 'current'."""
    if default:
        a, s, v = 12, "smoking_status", "current"
    else:
        s = r.choice(list(STRINGS))
        a, v = r.choice(AGES), r.choice(STRINGS[s])

    def check(f: dict[str, Any], c: dict[str, Any], on: date) -> bool:
        if f.get(s) != v:
            return False
        age = f.get("age")
        return age is not None and age >= a
    return f"age >= {a} && {s} == '{v}'", check, s


def t_age_and_either(r: random.Random, default: bool) -> tuple[str, Check, str | None]:
    """mental-wellbeing-talking-therapies: age >= 18 && (phq2 >= 3 || gad2 >= 3)."""
    if default:
        a, (x, t1), (y, t2) = 18, ("phq2", 3), ("gad2", 3)
    else:
        a, (x, t1), (y, t2) = r.choice(AGES), *_two_numeric(r)
    first, second = _ge(x, t1), _ge(y, t2)

    def check(f: dict[str, Any], c: dict[str, Any], on: date) -> bool:
        age = f.get("age")
        return age is not None and age >= a and (first(f) or second(f))
    return f"age >= {a} && ({x} >= {t1} || {y} >= {t2})", check, "age"


def t_band_without_conditions(r: random.Random, default: bool) -> tuple[str, Check, str | None]:
    """diabetes-prevention-programme: a band of one value, without two conditions."""
    if default:
        a, d, (lo, hi), g1, g2 = 18, "hba1c_mmol_mol", (42, 47), "diabetes_type1", "diabetes_type2"
    else:
        d = r.choice(list(RANGES))
        a, (lo, hi) = r.choice(AGES), r.choice(RANGES[d])
        g1, g2 = r.sample(GROUPS, 2)

    def check(f: dict[str, Any], c: dict[str, Any], on: date) -> bool:
        v = f.get(d)
        if v is None or not lo <= v <= hi or g1 in c or g2 in c:
            return False
        age = f.get("age")
        return age is not None and age >= a
    return (f"age >= {a} && {d} >= {lo} && {d} <= {hi} && !has_condition('{g1}') "
            f"&& !has_condition('{g2}')"), check, d


def t_bmi_threshold(r: random.Random, default: bool) -> tuple[str, Check, str | None]:
    """weight-management-referral: BMI over a threshold, lower for higher-risk ethnicity."""
    a, hi, lo = (18, 30, 27.5) if default else (
        r.choice(AGES), *r.choice([(30, 27.5), (35, 32.5), (40, 37.5), (32, 30)]))

    def check(f: dict[str, Any], c: dict[str, Any], on: date) -> bool:
        bmi = f.get("bmi")
        age = f.get("age")
        if bmi is None or age is None or age < a:
            return False
        return bmi >= hi or (f.get("ethnicity_group") in HIGHER_RISK and bmi >= lo)
    return (f"age >= {a} && (bmi >= {hi} || (known('ethnicity_group') && ethnicity_group in "
            f"[{HIGHER_RISK_TEXT}] && bmi >= {lo}))"), check, "bmi"


def t_band_or_fallback(r: random.Random, default: bool) -> tuple[str, Check, str | None]:
    """alcohol-brief-advice: a band of one score, or another score when the first is unknown."""
    if default:
        a, x, (lo, hi), y, t = 18, "audit", (8, 19), "audit_c", 5
    else:
        x = r.choice(list(RANGES))
        (lo, hi) = r.choice(RANGES[x])
        y, t = _numeric(r, exclude=x)
        a = r.choice(AGES)

    def check(f: dict[str, Any], c: dict[str, Any], on: date) -> bool:
        age = f.get("age")
        if age is None or age < a:
            return False
        v = f.get(x)
        if v is not None:
            return lo <= v <= hi
        w = f.get(y)
        return w is not None and w >= t
    return (f"age >= {a} && (({x} >= {lo} && {x} <= {hi}) || (!known('{x}') && {y} >= {t}))",
            check, "age")


def t_either_without(r: random.Random, default: bool) -> tuple[str, Check, str | None]:
    """blood-pressure-check: either reading high, without a diagnosis."""
    if default:
        a, (x, t1), (y, t2), g = 18, ("systolic_bp", 140), ("diastolic_bp", 90), "hypertension"
    else:
        a, (x, t1), (y, t2), g = r.choice(AGES), *_two_numeric(r), r.choice(GROUPS)
    first, second = _ge(x, t1), _ge(y, t2)

    def check(f: dict[str, Any], c: dict[str, Any], on: date) -> bool:
        age = f.get("age")
        return (age is not None and age >= a and (first(f) or second(f)) and g not in c)
    return (f"age >= {a} && ({x} >= {t1} || {y} >= {t2}) && !has_condition('{g}')", check,
            "age")


def _within(c: dict[str, Any], on: date, g: str, days: int) -> bool:
    onset = c.get(g)
    return onset is not None and 0 <= (on - onset).days <= days


def t_recent_diagnosis(r: random.Random, default: bool) -> tuple[str, Check, str | None]:
    """diabetes-structured-education: a condition diagnosed within N days."""
    g, n = ("diabetes_type2", 365) if default else (r.choice(GROUPS), r.choice([90, 180, 365, 730]))

    def check(f: dict[str, Any], c: dict[str, Any], on: date) -> bool:
        return g in c and _within(c, on, g, n)
    return f"has_condition('{g}') && diagnosed_within_days('{g}', {n})", check, None


def t_has_condition(r: random.Random, default: bool) -> tuple[str, Check, str | None]:
    """pulmonary-rehabilitation: has a condition (some variants add an age limit)."""
    if default or r.random() < 0.5:
        g = "copd" if default else r.choice(GROUPS)

        def check(f: dict[str, Any], c: dict[str, Any], on: date) -> bool:
            return g in c
        return f"has_condition('{g}')", check, None
    g, a = r.choice(GROUPS), r.choice(AGES)

    def check_aged(f: dict[str, Any], c: dict[str, Any], on: date) -> bool:
        if g not in c:
            return False
        age = f.get("age")
        return age is not None and age >= a
    return f"has_condition('{g}') && age >= {a}", check_aged, "age"


def t_either_recent(r: random.Random, default: bool) -> tuple[str, Check, str | None]:
    """cardiac-rehabilitation: either of two conditions diagnosed within N days."""
    g1, g2 = ("heart_failure", "coronary_heart_disease") if default else r.sample(GROUPS, 2)
    n: int = 365 if default else r.choice([180, 365, 730])

    def check(f: dict[str, Any], c: dict[str, Any], on: date) -> bool:
        return (g1 in c and _within(c, on, g1, n)) or (g2 in c and _within(c, on, g2, n))
    return (f"(has_condition('{g1}') && diagnosed_within_days('{g1}', {n})) || "
            f"(has_condition('{g2}') && diagnosed_within_days('{g2}', {n}))"), check, None


def t_age_and_one_of(r: random.Random, default: bool) -> tuple[str, Check, str | None]:
    """frailty-falls-prevention: age >= 65 && efi_category in ['moderate', 'severe']."""
    values: tuple[str, ...]
    if default:
        a, s, values = 65, "efi_category", ("moderate", "severe")
    else:
        s = r.choice(list(STRINGS))
        a, values = r.choice(AGES), tuple(r.sample(STRINGS[s], 2))
    members = frozenset(values)

    def check(f: dict[str, Any], c: dict[str, Any], on: date) -> bool:
        if f.get(s) not in members:
            return False
        age = f.get("age")
        return age is not None and age >= a
    listed = ", ".join(f"'{v}'" for v in values)
    return f"age >= {a} && {s} in [{listed}]", check, s


def t_flag(r: random.Random, default: bool) -> tuple[str, Check, str | None]:
    """carers-support: is_carer (variants: another flag, some with an age limit)."""
    b = "is_carer" if default else r.choice(BOOLS)
    if default or r.random() < 0.5:
        def check(f: dict[str, Any], c: dict[str, Any], on: date) -> bool:
            return f.get(b) is True
        return b, check, b
    a = r.choice(AGES)

    def check_aged(f: dict[str, Any], c: dict[str, Any], on: date) -> bool:
        if f.get(b) is not True:
            return False
        age = f.get("age")
        return age is not None and age >= a
    return f"{b} && age >= {a}", check_aged, b


def t_condition_count(r: random.Random, default: bool, ltc: frozenset[str] = frozenset()
                      ) -> tuple[str, Check, str | None]:
    """care-and-support-planning: condition_count() >= 2."""
    n = 2 if default else r.choice([2, 3, 4])

    def check(f: dict[str, Any], c: dict[str, Any], on: date) -> bool:
        return len(ltc.intersection(c)) >= n
    return f"condition_count() >= {n}", check, None


def t_score(r: random.Random, default: bool) -> tuple[str, Check, str | None]:
    """loneliness-social-prescribing: ucla3 >= 6."""
    x, t = ("ucla3", 6) if default else _numeric(r)

    def check(f: dict[str, Any], c: dict[str, Any], on: date) -> bool:
        v = f.get(x)
        return v is not None and v >= t
    return f"{x} >= {t}", check, x


def t_flag_plain(r: random.Random, default: bool) -> tuple[str, Check, str | None]:
    """money-advice: financial_concern (variants: another flag and an age limit)."""
    if default:
        def check(f: dict[str, Any], c: dict[str, Any], on: date) -> bool:
            return f.get("financial_concern") is True
        return "financial_concern", check, "financial_concern"
    b, a = r.choice(BOOLS), r.choice(AGES)

    def check_aged(f: dict[str, Any], c: dict[str, Any], on: date) -> bool:
        if f.get(b) is not True:
            return False
        age = f.get("age")
        return age is not None and age >= a
    return f"age >= {a} && {b}", check_aged, b


def t_category_or_below(r: random.Random, default: bool) -> tuple[str, Check, str | None]:
    """physical-activity-brief-advice: a category, or minutes below a threshold."""
    values: tuple[str, ...]
    if default:
        a, values, t = 18, ("inactive", "moderately_inactive"), 150
    else:
        a, values = r.choice(AGES), tuple(r.sample(STRINGS["gppaq"], 2))
        t = r.choice([60, 90, 120, 150])
    members = frozenset(values)

    def check(f: dict[str, Any], c: dict[str, Any], on: date) -> bool:
        age = f.get("age")
        if age is None or age < a:
            return False
        if f.get("gppaq") in members:
            return True
        m = f.get("activity_minutes_per_week")
        return m is not None and m < t
    listed = ", ".join(f"'{v}'" for v in values)
    return (f"age >= {a} && (gppaq in [{listed}] || activity_minutes_per_week < {t})", check,
            "age")


def t_bmi_band(r: random.Random, default: bool) -> tuple[str, Check, str | None]:
    """healthy-weight-conversation: a BMI band, lower for higher-risk ethnicity."""
    lo1: float
    hi1: float
    lo2: float
    hi2: float
    if default:
        a, lo1, hi1, lo2, hi2 = 18, 23, 27.5, 25, 30
    else:
        a = r.choice(AGES)
        lo1, hi1, lo2, hi2 = r.choice([(23, 27.5, 25, 30), (27.5, 32.5, 30, 35),
                                       (21, 23, 23, 25)])

    def check(f: dict[str, Any], c: dict[str, Any], on: date) -> bool:
        bmi = f.get("bmi")
        age = f.get("age")
        if bmi is None or age is None or age < a:
            return False
        if f.get("ethnicity_group") in HIGHER_RISK:
            return lo1 <= bmi < hi1
        return lo2 <= bmi < hi2
    return (f"age >= {a} && ((known('ethnicity_group') && ethnicity_group in [{HIGHER_RISK_TEXT}]"
            f" && bmi >= {lo1} && bmi < {hi1}) || (!(known('ethnicity_group') && ethnicity_group"
            f" in [{HIGHER_RISK_TEXT}]) && bmi >= {lo2} && bmi < {hi2}))"), check, "bmi"


def _numeric(r: random.Random, exclude: str | None = None) -> tuple[str, Any]:
    x = r.choice([n for n in NUMERIC if n != exclude])
    return x, r.choice(NUMERIC[x])


def _two_numeric(r: random.Random) -> tuple[tuple[str, Any], tuple[str, Any]]:
    x, y = r.sample(list(NUMERIC), 2)
    return (x, r.choice(NUMERIC[x])), (y, r.choice(NUMERIC[y]))


# In the default pack's order (by key below), one template per default rule.
TEMPLATES: dict[str, Callable[..., tuple[str, Check, str | None]]] = {
    "alcohol-specialist-referral": t_age_and_score,
    "smoking-very-brief-advice": t_age_and_status,
    "mental-wellbeing-talking-therapies": t_age_and_either,
    "diabetes-prevention-programme": t_band_without_conditions,
    "weight-management-referral": t_bmi_threshold,
    "alcohol-brief-advice": t_band_or_fallback,
    "blood-pressure-check": t_either_without,
    "diabetes-structured-education": t_recent_diagnosis,
    "pulmonary-rehabilitation": t_has_condition,
    "cardiac-rehabilitation": t_either_recent,
    "frailty-falls-prevention": t_age_and_one_of,
    "carers-support": t_flag,
    "care-and-support-planning": t_condition_count,
    "loneliness-social-prescribing": t_score,
    "money-advice": t_flag_plain,
    "physical-activity-brief-advice": t_category_or_below,
    "healthy-weight-conversation": t_bmi_band,
}


@dataclasses.dataclass
class Generated:
    rules: list[RuleDef]
    checks: list[Check]  # in the rules' rank order
    keyed_on: list[str | None]


def generate(n: int, defaults: Sequence[RuleDef], catalogue: Catalogue, seed: int) -> Generated:
    r = random.Random(seed)
    base = {rule.key: rule for rule in defaults}
    made: list[tuple[RuleDef, Check, str | None]] = []
    keys = list(TEMPLATES)
    for i in range(n):
        key = keys[i % len(keys)]
        template = TEMPLATES[key]
        variant = i // len(keys)
        kwargs = {"ltc": catalogue.ltc_groups} if template is t_condition_count else {}
        when, check, keyed = template(r, variant == 0, **kwargs)
        rule = dataclasses.replace(
            base[key], key=f"{key}-v{variant}", when=when,
            priority=base[key].priority if variant == 0 else r.randint(10, 99))
        made.append((rule, check, keyed))
    made.sort(key=lambda item: rank(item[0]))
    return Generated([m[0] for m in made], [m[1] for m in made], [m[2] for m in made])
