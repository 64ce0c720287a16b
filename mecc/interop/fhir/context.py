"""One mapping run: its inputs, what has been found so far, and its bookkeeping.

Every resource's mapping reports through the same three calls: `field` (an event field and where
it came from), `offer` (a candidate value for a fact) and `ignore` (what was not used, and why).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mecc.clinical.catalogue import Catalogue
from mecc.interop.fhir.checker import Checker
from mecc.interop.fhir.datatypes import reference_id
from mecc.interop.fhir.model import Defaults, Located, MappingResult, Origin
from mecc.interop.fhir.terms import CodeTables


@dataclass
class Candidate:
    """A value offered for a fact; when several are offered, one is chosen (see `mapper.py`)."""

    fact: str
    value: Any
    when: datetime | None
    origin: Origin
    element: str
    priority: int = 1  # a total beats a sum of items given at the same time
    note: str | None = None
    order: int = 0


@dataclass
class Measure:
    """A body weight (kg) or height (m), kept to derive a BMI from a pair taken the same day."""

    kind: str  # "weight" or "height"
    value: float
    when: datetime
    origin: Origin
    element: str


@dataclass
class Ethnicity:
    """An ethnic group read from a Patient extension or an Observation."""

    group: str
    when: datetime | None
    loc: Located
    element: str


@dataclass
class ScaleItem:
    """One answered item of a two-item scale (PHQ-2, GAD-2), waiting for its pair."""

    fact: str
    code: str
    score: int
    when: datetime | None
    group: str  # one administration: the panel resource, else the effective time
    origin: Origin
    element: str


class MappingContext:
    """The state of one run; the per-resource functions read and add to it."""

    def __init__(self, resources: Sequence[Located], catalogue: Catalogue,
                 defaults: Defaults, terms: CodeTables) -> None:
        self.resources = resources
        self.catalogue = catalogue
        self.defaults = defaults
        self.terms = terms
        self.measures: list[Measure] = []
        self.ethnicities: list[Ethnicity] = []
        self.result = MappingResult(event={})
        self.candidates: list[Candidate] = []
        self.items: list[ScaleItem] = []
        self.errors = Checker()  # errors that refuse the whole request
        self.patient: Located | None = None
        self.occurred: datetime | None = None  # the contact's time, once the Encounter is read
        self.condition_count = 0

    def ignore(self, loc: Located, reason: str, element: str | None = None) -> None:
        """Report an element (or a whole resource) as not used, and why."""
        entry: dict[str, Any] = {"from": loc.ref}
        if element:
            entry["element"] = element
        entry["reason"] = reason
        self.result.ignored.append(entry)

    def field(self, name: str, value: Any, loc: Located, element: str, *,
              show: bool = True) -> None:
        """Report a field of the event as mapped from an element (`show=False`: value hidden)."""
        self.result.provenance[name] = Origin(loc.ref, loc.at(element))
        entry: dict[str, Any] = {"field": name}
        if show:
            entry["value"] = value
        entry.update({"from": loc.ref, "element": element})
        self.result.mapped.append(entry)

    def offer(self, fact: str, value: Any, when: datetime | None, loc: Located, element: str,
              *, priority: int = 1, note: str | None = None) -> None:
        """Offer a value for a fact; the latest, then most direct, is chosen at the end."""
        self.candidates.append(Candidate(fact, value, when, Origin(loc.ref, loc.at(element)),
                                         element, priority, note, len(self.candidates)))

    def resolve(self, reference: str) -> Located | None:
        """The resource of this request a reference names: by fullUrl (`urn:uuid:...`, an
        absolute URL), else by type and id (`Medication/7`, also when ids come from fullUrls)."""
        for loc in self.resources:
            if loc.full_url and loc.full_url == reference:
                return loc
        kind, ident = reference_id(reference)
        if kind is None:
            return None
        for loc in self.resources:
            if loc.type == kind and loc.id == ident:
                return loc
        return None
