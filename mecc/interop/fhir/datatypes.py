"""FHIR primitive formats and the helpers that read data types (codings, references, dates)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
DATE = re.compile(r"^[0-9]{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01]))?)?$")
DATETIME = re.compile(
    r"^[0-9]{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01])"
    r"(T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]{1,9})?"
    r"(Z|[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?$")
INSTANT = re.compile(
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:"
    r"([0-5][0-9]|60)(\.[0-9]{1,9})?(Z|[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00))$")
_FRACTION = re.compile(r"\.([0-9]+)")


def parse_datetime(value: str) -> datetime | None:
    """A FHIR date / dateTime / instant as an aware datetime (partial dates: their start, UTC).

    A time without a zone (not valid FHIR, but seen) is read as UTC; None when unreadable.
    """
    if not isinstance(value, str):
        return None
    try:
        if len(value) == 4:
            return datetime(int(value), 1, 1, tzinfo=UTC)
        if len(value) == 7:
            return datetime(int(value[:4]), int(value[5:7]), 1, tzinfo=UTC)
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), datetime.min.time(), tzinfo=UTC)
        # Python reads at most six fractional digits; FHIR allows nine.
        text = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), value, count=1)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, OverflowError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def has_time_and_zone(value: str) -> bool:
    return bool(isinstance(value, str) and "T" in value and DATETIME.match(value))


def codings(concept: Any) -> list[tuple[int, Mapping[str, Any]]]:
    """The codings of a CodeableConcept with their index (items that are not objects skipped)."""
    if not isinstance(concept, Mapping):
        return []
    items = concept.get("coding")
    return [(i, c) for i, c in enumerate(items) if isinstance(c, Mapping)] \
        if isinstance(items, list) else []


def coding_key(coding: Mapping[str, Any]) -> tuple[str, str]:
    """(system, code) of a Coding, as the code tables are keyed."""
    return (str(coding.get("system", "")).strip(), str(coding.get("code", "")).strip())


def describe_codes(concept: Any) -> str:
    """The codings of a concept as `system|code, ...` for an ignored entry's reason."""
    found = [f"{c.get('system', '?')}|{c.get('code', '?')}" for _, c in codings(concept)]
    return ", ".join(found) if found else "no codings"


def reference_id(reference: str) -> tuple[str | None, str]:
    """'Practitioner/123' or 'https://x/fhir/Practitioner/123/_history/2' -> type and id."""
    parts = [p for p in reference.split("/_history/")[0].split("/") if p]
    if len(parts) >= 2 and parts[-2][:1].isupper():
        return parts[-2], parts[-1]
    return None, reference


def absent_reason(node: Mapping[str, Any]) -> str:
    """What a dataAbsentReason says: its codes, else its text."""
    reason = node.get("dataAbsentReason")
    codes = [str(c.get("code")) for _, c in codings(reason)]
    text = reason.get("text") if isinstance(reason, Mapping) else None
    return ", ".join(codes) or (text if isinstance(text, str) else "no value")
