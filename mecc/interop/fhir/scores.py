"""Questionnaire scores: PHQ-2 and GAD-2, from a total or as the sum of their two items; the
PHQ-9 and GAD-7 totals from their panels (sent alone, they are plain numeric codes).

Items count only in pairs from one administration (one panel, else one effective time); a total
sent as such wins over a sum of items given at the same time.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from mecc.interop.fhir.codes import LOINC
from mecc.interop.fhir.context import Candidate, MappingContext, ScaleItem
from mecc.interop.fhir.datatypes import absent_reason, coding_key, codings, describe_codes
from mecc.interop.fhir.model import Located, Origin
from mecc.interop.fhir.units import offer_numeric

# LOINC answer codes of the PHQ/GAD item answer list (Not at all .. Nearly every day).
ITEM_ANSWERS = {"LA6568-5": 0, "LA6569-3": 1, "LA6570-1": 2, "LA6571-9": 3}
# Two-item scales: fact -> its two item codes (LOINC).
SCALE_ITEMS = {"phq2": ("44250-9", "44255-8"), "gad2": ("69725-0", "68509-9")}
ITEM_SCALE = {code: fact for fact, codes in SCALE_ITEMS.items() for code in codes}
# Panels whose components may carry a total or the items of a two-item scale.
# A value on the panel itself is its total.
SCORE_PANELS = {(LOINC, "55757-9"): "phq2",  # PHQ-2 panel
                (LOINC, "44249-1"): "phq9",  # PHQ-9 panel: its first two items are the PHQ-2
                (LOINC, "69737-5"): "gad7"}  # GAD-7 panel: its first two items are the GAD-2
# Totals sent as components of a panel.
PANEL_TOTALS = {"55758-7": "phq2", "44261-6": "phq9", "70274-6": "gad7"}


def map_score_panel(ctx: MappingContext, loc: Located, total_fact: str | None,
                    when: datetime | None) -> None:
    """A PHQ-2, PHQ-9 or GAD-7 panel: its total (PHQ-2) and the items of its components."""
    obs = loc.resource
    if total_fact and any(k.startswith("value") for k in obs):
        offer_numeric(ctx, total_fact, obs, loc, "", when, ("", ""))
    components = obs.get("component")
    for c, comp in enumerate(components if isinstance(components, list) else []):
        if not isinstance(comp, Mapping):
            continue
        keys = [coding_key(cd) for _, cd in codings(comp.get("code"))]
        total = next((code for system, code in keys
                      if system == LOINC and code in PANEL_TOTALS), None)
        if total is not None:
            offer_numeric(ctx, PANEL_TOTALS[total], comp, loc, f"component[{c}]", when,
                          (LOINC, total))
            continue
        item = next((code for system, code in keys
                     if system == LOINC and code in ITEM_SCALE), None)
        if item is None:
            ctx.ignore(loc, "Not a total or a two-item-scale item "
                       f"({describe_codes(comp.get('code'))}).", f"component[{c}]")
            continue
        record_item(ctx, item, comp, loc, f"component[{c}]", when, group=f"panel:{loc.path}")


def record_item(ctx: MappingContext, code: str, node: Mapping[str, Any], loc: Located,
                prefix: str, when: datetime | None, *, group: str) -> None:
    """Keep an item's score (0-3, from its answer code or a number) until its pair is seen."""
    at = f"{prefix}." if prefix else ""
    score: int | None = None
    element = f"{at}value[x]"
    concept = node.get("valueCodeableConcept")
    if "dataAbsentReason" in node and not any(k.startswith("value") for k in node):
        ctx.ignore(loc, f"dataAbsentReason: {absent_reason(node)}.", f"{at}dataAbsentReason")
        return
    for i, coding in codings(concept):
        answer = str(coding.get("code"))
        if answer in ITEM_ANSWERS:
            score, element = ITEM_ANSWERS[answer], f"{at}valueCodeableConcept.coding[{i}]"
            break
    if score is None:
        raw = node.get("valueInteger")
        if raw is None and isinstance(node.get("valueQuantity"), Mapping):
            raw, element = node["valueQuantity"].get("value"), f"{at}valueQuantity.value"
        else:
            element = f"{at}valueInteger"
        if isinstance(raw, int | float) and not isinstance(raw, bool) \
                and float(raw).is_integer() and 0 <= raw <= 3:
            score = int(raw)
    if score is None:
        ctx.ignore(loc, f"Item {code} has no answer scored 0-3.", f"{at}value[x]")
        return
    ctx.items.append(ScaleItem(ITEM_SCALE[code], code, score, when, group,
                               Origin(loc.ref, loc.at(element)), element))


def sum_items(ctx: MappingContext) -> None:
    """Offer each pair of items from one administration as their scale's sum; report the rest."""
    groups: dict[tuple[str, str], dict[str, ScaleItem]] = {}
    for item in ctx.items:
        slot = groups.setdefault((item.fact, item.group), {})
        slot[item.code] = item  # a repeated item within one administration: the last
    used: set[int] = set()
    for (fact, _), found in groups.items():
        first, second = SCALE_ITEMS[fact]
        if first in found and second in found:
            a, b = found[first], found[second]
            when = max((t for t in (a.when, b.when) if t is not None), default=None)
            same = a.origin.ref == b.origin.ref
            ref = a.origin.ref if same else f"{a.origin.ref} + {b.origin.ref}"
            ctx.candidates.append(Candidate(
                fact, a.score + b.score, when, Origin(ref, a.origin.path),
                a.element if same else "value[x]", priority=1,
                note=f"sum of items {first} ({a.score}) and {second} ({b.score})",
                order=len(ctx.candidates)))
            used.update((id(a), id(b)))
    for item in ctx.items:
        if id(item) not in used:
            other = [c for c in SCALE_ITEMS[item.fact] if c != item.code][0]
            ctx.result.ignored.append({
                "from": item.origin.ref, "element": item.element,
                "reason": f"{item.fact} item {item.code} without item {other} from the "
                          "same administration; a sum needs both."})
