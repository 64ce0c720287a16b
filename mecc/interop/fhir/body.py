"""Body weight and height: a BMI derived from a pair measured on the same day, for the days on
which no BMI was sent (RULE-PACK.md: "BMI may be derived from a weight and a height recorded on
the same day when no BMI is sent").
"""

from __future__ import annotations

from datetime import datetime

from mecc.interop.fhir.codes import LOINC, SNOMED
from mecc.interop.fhir.context import Candidate, MappingContext, Measure
from mecc.interop.fhir.model import Located, Origin
from mecc.interop.fhir.units import read_number

MEASURES = {
    (LOINC, "29463-7"): "weight",  # Body weight
    (LOINC, "3141-9"): "weight",  # Body weight Measured
    (SNOMED, "27113001"): "weight",  # Body weight
    (LOINC, "8302-2"): "height",  # Body height
    (LOINC, "8308-9"): "height",  # Body height --standing
    (SNOMED, "50373000"): "height",  # Body height measure
    (SNOMED, "248333004"): "height",  # Standing height
}
# unit -> factor to kg / m
WEIGHT_UNITS = {"kg": 1.0, "g": 0.001, "[lb_av]": 0.45359237, "lb": 0.45359237,
                "lbs": 0.45359237}
HEIGHT_UNITS = {"m": 1.0, "cm": 0.01, "mm": 0.001, "[in_i]": 0.0254, "in": 0.0254}
PLAUSIBLE = {"weight": (2.0, 500.0), "height": (0.4, 2.6)}  # kg, m


def map_measure(ctx: MappingContext, kind: str, loc: Located, when: datetime | None) -> None:
    """Keep a weight or height (in kg / m) for `derive_bmi`."""
    found = read_number(ctx, loc.resource, loc, "")
    if found is None:
        return
    raw, unit, element = found
    units = WEIGHT_UNITS if kind == "weight" else HEIGHT_UNITS
    factor = units.get((unit or "").strip().lower()) if unit else None
    if factor is None:
        ctx.ignore(loc, f"The {kind} unit '{unit}' is not one of {', '.join(units)}.", element)
        return
    value = float(raw) * factor
    low, high = PLAUSIBLE[kind]
    if not low <= value <= high:
        ctx.ignore(loc, f"A {kind} of {raw} {unit} is not plausible; no BMI is derived.",
                   element)
        return
    if when is None:
        other = "height" if kind == "weight" else "weight"
        ctx.ignore(loc, f"An undated {kind} cannot be paired with a {other} of the same day.",
                   "effective[x]")
        return
    ctx.measures.append(Measure(kind, value, when, Origin(loc.ref, loc.at(element)), element))


def derive_bmi(ctx: MappingContext) -> None:
    """Offer a BMI for each day with a weight and a height and no BMI sent (the latest of
    each that day); weights and heights of other days are reported."""
    sent_days = {c.when.date() for c in ctx.candidates if c.fact == "bmi" and c.when}
    days: dict[object, dict[str, Measure]] = {}
    for m in ctx.measures:
        slot = days.setdefault(m.when.date(), {})
        if m.kind not in slot or m.when >= slot[m.kind].when:
            slot[m.kind] = m
    used: set[int] = set()
    for day, pair in sorted(days.items(), key=lambda item: str(item[0])):
        if day in sent_days or len(pair) < 2:
            continue
        weight, height = pair["weight"], pair["height"]
        bmi = round(weight.value / (height.value * height.value), 1)
        when = max(weight.when, height.when)
        ref = f"{weight.origin.ref} + {height.origin.ref}"
        ctx.candidates.append(Candidate(
            "bmi", bmi, when, Origin(ref, weight.origin.path), "value[x]", priority=0,
            note=f"derived from weight {weight.value:g} kg and height {height.value:g} m "
                 "measured the same day", order=len(ctx.candidates)))
        used.update((id(weight), id(height)))
    for m in ctx.measures:
        if id(m) not in used:
            ctx.result.ignored.append({
                "from": m.origin.ref, "element": m.element,
                "reason": f"A {m.kind} alone: no BMI is derived (a BMI was sent that day, or "
                          "no weight and height were both measured that day)."})
