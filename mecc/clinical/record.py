"""What a person's record says at one contact: current conditions, medicine classes, and the
facts a coded condition implies.

Pure domain code, shared by JSON events, the FHIR mapper and CDS Hooks (RULE-PACK.md: "Absence
is only as good as the code list", "Current, not historic").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from mecc.clinical.catalogue import Catalogue


@dataclass(frozen=True)
class ConditionState:
    """A condition group the person has now."""

    onset: date | None  # the earliest dated code of the current episode; None: not known
    recorded: date | None  # the latest dated code of the group; None: none was dated


def as_date(value: date | datetime | str) -> date:
    """A date, a timestamp (its UTC date) or their ISO text, as a date."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value.date()
        return value.astimezone(UTC).date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    if len(text) > 10:  # a full timestamp: its UTC date
        return as_date(datetime.fromisoformat(text.replace("Z", "+00:00")))
    return date.fromisoformat(text)


def current_conditions(items: Sequence[Mapping[str, Any]],
                       catalogue: Catalogue) -> dict[str, ConditionState]:
    """Condition group -> its state, for the groups that are current.

    Each item is ``{"group": g}`` (mapped by the sender; an including group such as
    diabetes_any comes with it) or ``{"system", "code", "onset_date"?}`` mapped through the
    value sets. Unknown codes and groups are ignored. A group with *resolved* codes in the list
    (QOF's rule) is current only when its latest diagnosis code is later than its latest
    resolved code; when either is undated the order is unknown and the diagnosis stands,
    because a prompt that contradicts a diagnosis is the worse mistake. After a resolution, the
    onset is that of the first diagnosis code after it.
    """
    diagnosed: dict[str, list[date | None]] = {}
    resolved: dict[str, list[date | None]] = {}
    for item in items:
        raw_day = item.get("onset_date")
        day = as_date(raw_day) if raw_day is not None else None
        ended: Iterable[str] = ()
        names: Iterable[str] = ()
        group = item.get("group")
        if group is not None:
            names = catalogue.with_including_groups([group]) if group in catalogue.groups else ()
        elif item.get("system") and item.get("code"):
            system, code = str(item["system"]), str(item["code"])
            ended = catalogue.groups_resolved_by(system, code)
            names = () if ended else catalogue.groups_for_code(system, code)
        for name in names:
            diagnosed.setdefault(name, []).append(day)
        for name in ended:
            resolved.setdefault(name, []).append(day)
    states: dict[str, ConditionState] = {}
    for name, days in diagnosed.items():
        ends = resolved.get(name)
        if ends and None not in ends and None not in days:
            last_end = max(d for d in ends if d is not None)
            days = [d for d in days if d is not None and d > last_end]
            if not days:
                continue
        dated = [d for d in days if d is not None]
        states[name] = ConditionState(min(dated) if dated else None,
                                      max(dated) if dated else None)
    return states


def medicine_classes(medications: Iterable[Mapping[str, Any]],
                     catalogue: Catalogue) -> frozenset[str]:
    """The medicine classes (diabetes, hypertension) of the person's current medicines."""
    found: set[str] = set()
    for item in medications:
        system, code = item.get("system"), item.get("code")
        if system and code:
            found.update(catalogue.medicine_classes_for_code(str(system), str(code)))
    return frozenset(found)


def implied_facts(states: Mapping[str, ConditionState],
                  catalogue: Catalogue) -> dict[str, tuple[Any, date | None]]:
    """Facts that current condition groups imply (frailty codes -> efi_category, a carer code
    -> is_carer), each with the date of the code it rests on.

    Where several groups imply values for one fact, the most recent code wins; an undated code
    counts as current at the contact; on a tie the group listed later in the value sets (the
    more severe frailty level) wins.
    """
    chosen: dict[str, tuple[tuple[int, date], Any, date | None]] = {}
    for group in catalogue.implying_groups:  # in value-set order: later wins a tie
        state = states.get(group.name)
        if state is None:
            continue
        # Undated sorts after every date: taken as current at the contact.
        rank = (1, date.min) if state.recorded is None else (0, state.recorded)
        for fact, value in group.implies.items():
            best = chosen.get(fact)
            if best is None or rank >= best[0]:
                chosen[fact] = (rank, value, state.recorded)
    return {fact: (value, day) for fact, (_, value, day) in chosen.items()}
