"""Numeric values: reading an Observation's (or component's) number and converting its unit.

The catalogue states each numeric fact's unit; a value in another unit is converted when the
conversion is exact and known (kPa -> mm[Hg], HbA1c % (DCCT) -> mmol/mol (IFCC)), else ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mecc.clinical.catalogue import Catalogue, FactSpec
from mecc.interop.fhir.codes import LOINC, SNOMED, UCUM
from mecc.interop.fhir.context import MappingContext
from mecc.interop.fhir.datatypes import absent_reason
from mecc.interop.fhir.model import Located

# The unit assumed when a quantity has none (the code's own unit); the UK HbA1c codes' units
# come from terms.py (an IFCC code is in mmol/mol, a DCCT-aligned one in %).
DEFAULT_UNIT = {(LOINC, "4548-4"): "%", (LOINC, "17856-6"): "%", (LOINC, "4549-2"): "%",
                (LOINC, "59261-8"): "mmol/mol"}
# HbA1c units as laboratories write them ("mmol/mol Hb", "mmol/mol{Hb}", "% Hb").
HBA1C_UNITS = {"mmol/mol": "mmol/mol", "mmol/mol hb": "mmol/mol", "mmol/mol{hb}": "mmol/mol",
               "mmol/mol(hb)": "mmol/mol", "mmol/mol{hba1c}": "mmol/mol", "%": "%",
               "% hb": "%", "%{hb}": "%", "%{hba1c}": "%", "%(hb)": "%", "% of total hb": "%",
               "%{total}": "%", "{%}": "%"}
# Without a unit, a code that does not say which scale it is on is read by the number:
# HbA1c below 20 is % (DCCT; 20 % is beyond any measured), 20 and over mmol/mol (IFCC; below
# 20 mmol/mol is not seen in a living person).
HBA1C_SCALE_SPLIT = 20
SCORE_UNITS = {"1", "{score}", "{Score}", "score", "{ScoreOf}"}
MMHG_PER_KPA = 7.50062


@dataclass(frozen=True)
class Converted:
    value: Any
    note: str | None = None  # how it was converted, when it was


class Unconvertible(ValueError):
    """The unit cannot be converted to the catalogue's; the message says so."""


def offer_numeric(ctx: MappingContext, fact: str, node: Mapping[str, Any], loc: Located,
                  prefix: str, when: datetime | None, key: tuple[str, str]) -> None:
    """Offer the number of `node` (coded `key`) as `fact`, in the catalogue's unit."""
    found = read_number(ctx, node, loc, prefix, default_unit(ctx, key))
    if found is None:
        return
    raw, unit, element = found
    note = None
    if fact == "hba1c_mmol_mol" and unit is None:
        unit = "%" if raw < HBA1C_SCALE_SPLIT else "mmol/mol"
        note = f"no unit sent: {raw} read as {unit}"
    try:
        converted = convert(ctx.catalogue, fact, raw, unit)
    except Unconvertible as exc:
        ctx.ignore(loc, str(exc), element)
        return
    notes = "; ".join(n for n in (note, converted.note) if n) or None
    ctx.offer(fact, converted.value, when, loc, element, priority=2, note=notes)


def default_unit(ctx: MappingContext, key: tuple[str, str]) -> str | None:
    """The unit a value coded `key` is in when the quantity names none."""
    if key in DEFAULT_UNIT:
        return DEFAULT_UNIT[key]
    system, code = key
    return ctx.terms.hba1c.get(code) if system == SNOMED else None


def read_number(ctx: MappingContext, node: Mapping[str, Any], loc: Located, prefix: str,
                default_unit: str | None = None
                ) -> tuple[float | int, str | None, str] | None:
    """The numeric value of an Observation or component: (value, unit, element)."""
    at = f"{prefix}." if prefix else ""
    if "dataAbsentReason" in node and not any(k.startswith("value") for k in node):
        ctx.ignore(loc, f"dataAbsentReason: {absent_reason(node)}.",
                   f"{at}dataAbsentReason")
        return None
    quantity = node.get("valueQuantity")
    if isinstance(quantity, Mapping):
        value = quantity.get("value")
        if isinstance(value, bool) or not isinstance(value, int | float):
            ctx.ignore(loc, "valueQuantity has no numeric value.", f"{at}valueQuantity")
            return None
        if quantity.get("comparator"):
            ctx.ignore(loc, f"The value is {quantity['comparator']}{value}, not a "
                       "measurement.", f"{at}valueQuantity.comparator")
            return None
        unit = quantity.get("code") if quantity.get("system") == UCUM and \
            quantity.get("code") else quantity.get("unit") or quantity.get("code")
        return value, unit if isinstance(unit, str) else default_unit, \
            f"{at}valueQuantity.value"
    if "valueInteger" in node and not isinstance(node["valueInteger"], bool) \
            and isinstance(node["valueInteger"], int | float):
        return node["valueInteger"], default_unit, f"{at}valueInteger"
    present = next((k for k in node if k.startswith("value")), None)
    ctx.ignore(loc, f"{present or 'No value'}: a number was expected.",
               f"{at}{present or 'value[x]'}")
    return None


def convert(catalogue: Catalogue, fact: str, raw: float | int, unit: str | None) -> Converted:
    """`raw` in `unit` as the catalogue's value of `fact` (raises Unconvertible)."""
    if fact == "hba1c_mmol_mol":
        unit = HBA1C_UNITS.get(" ".join((unit or "mmol/mol").lower().split()), unit)
        if unit == "%":
            return Converted(round((raw - 2.15) * 10.929, 1),
                             f"converted from {raw} % (IFCC = (DCCT - 2.15) x 10.929)")
        if unit == "mmol/mol":
            return Converted(round(float(raw), 1))
        raise Unconvertible(f"Unit '{unit}' cannot be converted to mmol/mol.")
    spec = catalogue.facts[fact]
    factor = 1.0 if unit is not None and unit == spec.unit else unit_factor(fact, unit)
    if factor is None:
        raise Unconvertible(f"Unit '{unit}' cannot be converted to {spec.unit}.")
    note = f"converted from {raw} {unit}" if factor != 1.0 else None
    return Converted(_typed(fact, spec, raw * factor), note)


def unit_factor(fact: str, unit: str | None) -> float | None:
    """Multiplier to the catalogue unit, or None when the unit is not one we can convert."""
    if unit is None:
        return 1.0
    if fact == "bmi":
        return 1.0 if unit.lower() in ("kg/m2", "kg/m^2", "kg/(m2)", "kg/m²") else None
    if fact in ("systolic_bp", "diastolic_bp"):
        if unit in ("mm[Hg]", "mmHg", "mm Hg"):
            return 1.0
        return MMHG_PER_KPA if unit == "kPa" else None
    return 1.0 if unit in SCORE_UNITS else None


def _typed(fact: str, spec: FactSpec, value: Any) -> Any:
    """The value as the fact's catalogue type (blood pressures rounded half up)."""
    if spec.type == "int" and isinstance(value, float):
        if fact in ("systolic_bp", "diastolic_bp"):
            return int(value + 0.5) if value >= 0 else round(value)
        return int(value) if value.is_integer() else value
    if spec.type == "double" and isinstance(value, int):
        return float(value)
    return value
