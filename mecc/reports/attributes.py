"""Who a prompt reached, as recorded at the contact: the person attributes reports group by.

Pure (no database): the evaluation pipeline stores `person_attributes` on each prompt, and the
reports read them back. Never the display label or an NHS number.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

UNKNOWN = "unknown"
# CONTRACT.md, Reports: the age bands, in order; "unknown" when neither age nor birth date
# was sent (or the birth date was after the contact).
AGE_BANDS = ("0-15", "16-24", "25-34", "35-44", "45-54", "55-64", "65-74", "75+")
_BAND_STARTS = (0, 16, 25, 35, 45, 55, 65, 75)
DEPRIVATION_DECILES = tuple(str(n) for n in range(1, 11))
# Groupings by a person attribute: small numbers are suppressed in them.
PERSON_GROUPINGS = ("ethnicity_group", "age_band", "sex", "postcode_district",
                    "deprivation_decile")


def age_band(age: int | None) -> str | None:
    """The band of a whole-years age (None when the age is not known)."""
    if age is None or isinstance(age, bool) or age < 0:
        return None
    band = AGE_BANDS[0]
    for start, name in zip(_BAND_STARTS, AGE_BANDS, strict=True):
        if age >= start:
            band = name
    return band


def person_attributes(facts: Mapping[str, Any]) -> dict[str, str | None]:
    """The reportable attributes of one contact, from its evaluation facts (age derived from
    the birth date at the contact, sex, ethnicity group, postcode district)."""
    age = facts.get("age")
    return {
        "age_band": age_band(int(age)) if isinstance(age, int | float) else None,
        "sex": _text(facts.get("sex")),
        "ethnicity_group": _text(facts.get("ethnicity_group")),
        "postcode_district": _text(facts.get("postcode_district")),
    }


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def group_order(group_by: str, keys: list[str]) -> list[str] | None:
    """The natural order of an ordinal grouping (age bands, deciles), unknown last; None for
    groupings without one (the caller orders those by size)."""
    if group_by == "age_band":
        natural: tuple[str, ...] = AGE_BANDS
    elif group_by == "deprivation_decile":
        natural = DEPRIVATION_DECILES
    else:
        return None
    rank = {k: i for i, k in enumerate((*natural, UNKNOWN))}
    return sorted(keys, key=lambda k: (rank.get(k, len(rank)), k))
