"""Structural checks: the JSON type and FHIR format of every element the mapping reads.

Only what the mapping reads is checked, so a Bundle is not refused for an element we never use.
Each error is keyed by the element's path from the body root and names the resource and element.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from mecc.interop.fhir.codes import ETHNIC_CATEGORY_URL
from mecc.interop.fhir.datatypes import DATE, DATETIME, ID, INSTANT
from mecc.interop.fhir.model import Located
from mecc.platform.errors import ValidationFailed, describe


class Checker:
    """Collects structural errors (JSON types of the elements the mapping reads)."""

    def __init__(self) -> None:
        self.errors: dict[str, list[str]] = {}
        self._within: Located | None = None  # the resource being checked

    def fail(self, path: str, message: str) -> None:
        loc = self._within
        if loc is not None and path.startswith(loc.path):
            # Name the resource and element: "Encounter.period.start: Not a valid ...".
            message = f"{loc.type}{path[len(loc.path):]}: {message}"
        self.errors.setdefault(path, []).append(message)

    def raise_if_any(self, lead: str = "The FHIR content is not valid") -> None:
        if self.errors:
            raise ValidationFailed(f"{lead}: " + describe(self.errors).removeprefix(
                "Invalid request: "), errors=self.errors)

    # shapes
    def obj(self, node: Any, path: str) -> bool:
        if not isinstance(node, Mapping):
            self.fail(path, "Must be a JSON object.")
            return False
        return True

    def array(self, node: Any, path: str) -> list[Any]:
        if not isinstance(node, list):
            self.fail(path, "Must be a JSON array.")
            return []
        return node

    def string(self, node: Any, path: str) -> bool:
        if not isinstance(node, str):
            self.fail(path, "Must be a string.")
            return False
        if not node.strip():
            self.fail(path, "Must not be empty.")
            return False
        return True

    def pattern(self, node: Any, path: str, regex: re.Pattern[str], what: str) -> None:
        if self.string(node, path) and not regex.match(node):
            self.fail(path, f"Not a valid FHIR {what}.")

    def number(self, node: Any, path: str) -> None:
        if isinstance(node, bool) or not isinstance(node, int | float):
            self.fail(path, "Must be a JSON number.")

    def integer(self, node: Any, path: str) -> None:
        if isinstance(node, bool) or not (isinstance(node, int) or (
                isinstance(node, float) and node.is_integer())):
            self.fail(path, "Must be a JSON integer.")

    def boolean(self, node: Any, path: str) -> None:
        if not isinstance(node, bool):
            self.fail(path, "Must be true or false.")

    # data types (only the elements the mapping reads are checked)
    def fields(self, node: Mapping[str, Any], path: str,
               checks: Mapping[str, Callable[[Any, str], Any]]) -> None:
        for name, check in checks.items():
            if name in node:
                check(node[name], f"{path}.{name}")

    def coding(self, node: Any, path: str) -> None:
        if self.obj(node, path):
            self.fields(node, path, {"system": self.string, "code": self.string,
                                     "display": self.string, "version": self.string})

    def codeable(self, node: Any, path: str) -> None:
        if self.obj(node, path):
            if "coding" in node:
                for i, item in enumerate(self.array(node["coding"], f"{path}.coding")):
                    self.coding(item, f"{path}.coding[{i}]")
            self.fields(node, path, {"text": self.string})

    def codeables(self, node: Any, path: str) -> None:
        for i, item in enumerate(self.array(node, path)):
            self.codeable(item, f"{path}[{i}]")

    def quantity(self, node: Any, path: str) -> None:
        if self.obj(node, path):
            if "value" not in node:
                self.fail(f"{path}.value", "Required (a Quantity without a value says "
                          "nothing).")
            self.fields(node, path, {"value": self.number, "unit": self.string,
                                     "system": self.string, "code": self.string})
            if "comparator" in node and node["comparator"] not in ("<", "<=", ">=", ">"):
                self.fail(f"{path}.comparator", "Must be one of <, <=, >=, >.")

    def period(self, node: Any, path: str) -> None:
        if self.obj(node, path):
            for name in ("start", "end"):
                if name in node:
                    self.date_time(node[name], f"{path}.{name}")

    def identifier(self, node: Any, path: str) -> None:
        if self.obj(node, path):
            self.fields(node, path, {"system": self.string, "value": self.string})

    def identifiers(self, node: Any, path: str) -> None:
        for i, item in enumerate(self.array(node, path)):
            self.identifier(item, f"{path}[{i}]")

    def reference(self, node: Any, path: str) -> None:
        if self.obj(node, path):
            self.fields(node, path, {"reference": self.string, "identifier": self.identifier,
                                     "display": self.string})

    def date_time(self, node: Any, path: str) -> None:
        self.pattern(node, path, DATETIME, "dateTime (YYYY, YYYY-MM, YYYY-MM-DD, or a date-time "
                     "with a zone offset)")

    def instant(self, node: Any, path: str) -> None:
        self.pattern(node, path, INSTANT, "instant")

    def extensions(self, node: Any, path: str) -> None:
        for i, item in enumerate(self.array(node, path)):
            if self.obj(item, f"{path}[{i}]"):
                if "url" not in item:
                    self.fail(f"{path}[{i}].url", "Required.")
                else:
                    self.string(item["url"], f"{path}[{i}].url")
                if item.get("url") == ETHNIC_CATEGORY_URL and "valueCodeableConcept" in item:
                    self.codeable(item["valueCodeableConcept"],
                                  f"{path}[{i}].valueCodeableConcept")

    def value_x(self, node: Mapping[str, Any], path: str) -> None:
        present = [k for k in node if k.startswith("value")]
        if len(present) > 1:
            self.fail(f"{path}.{present[1]}", f"Only one value[x] is allowed (also has "
                      f"{present[0]}).")
        self.fields(node, path, {
            "valueQuantity": self.quantity, "valueCodeableConcept": self.codeable,
            "valueInteger": self.integer, "valueString": self.string,
            "valueBoolean": self.boolean, "dataAbsentReason": self.codeable})

    # resources
    def resource(self, loc: Located) -> None:
        node, path = loc.resource, loc.path
        # An explicit table, never a method looked up by name: a resource type called
        # "Gender" or "Components" must not reach the element checks of that name.
        checks: dict[str, Callable[[Mapping[str, Any], str], None]] = {
            "Patient": self._patient, "Encounter": self._encounter,
            "Condition": self._condition, "Observation": self._observation,
            "MedicationStatement": self._medication_use,
            "MedicationRequest": self._medication_use, "Medication": self._medication}
        check = checks.get(loc.type)
        self._within = loc
        try:
            if "id" in node:
                self.pattern(node["id"], f"{path}.id", ID, "id")
            if check is not None:
                check(node, path)
        finally:
            self._within = None

    def _patient(self, node: Mapping[str, Any], path: str) -> None:
        self.fields(node, path, {
            "identifier": self.identifiers, "extension": self.extensions,
            "birthDate": lambda v, p: self.pattern(v, p, DATE, "date"),
            "gender": self._gender, "address": self._addresses})

    def _gender(self, node: Any, path: str) -> None:
        if node not in ("male", "female", "other", "unknown"):
            self.fail(path, "Must be one of male, female, other, unknown.")

    def _addresses(self, node: Any, path: str) -> None:
        for i, item in enumerate(self.array(node, path)):
            if self.obj(item, f"{path}[{i}]"):
                self.fields(item, f"{path}[{i}]", {"postalCode": self.string,
                                                   "use": self.string,
                                                   "period": self.period})

    def _encounter(self, node: Mapping[str, Any], path: str) -> None:
        self.fields(node, path, {
            "status": self.string, "class": self.coding, "type": self.codeables,
            "serviceType": self.codeable, "identifier": self.identifiers,
            "period": self.period, "serviceProvider": self.reference,
            "participant": self._participants})

    def _participants(self, node: Any, path: str) -> None:
        for i, item in enumerate(self.array(node, path)):
            if self.obj(item, f"{path}[{i}]"):
                self.fields(item, f"{path}[{i}]", {"type": self.codeables,
                                                   "individual": self.reference})

    def _condition(self, node: Mapping[str, Any], path: str) -> None:
        self.fields(node, path, {
            "clinicalStatus": self.codeable, "verificationStatus": self.codeable,
            "code": self.codeable, "subject": self.reference,
            "onsetDateTime": self.date_time, "onsetPeriod": self.period,
            "recordedDate": self.date_time})

    def _medication_use(self, node: Mapping[str, Any], path: str) -> None:
        if "status" not in node:
            self.fail(f"{path}.status", "Required.")
        self.fields(node, path, {
            "status": self.string, "medicationCodeableConcept": self.codeable,
            "medicationReference": self.reference, "subject": self.reference,
            "effectiveDateTime": self.date_time, "effectivePeriod": self.period,
            "authoredOn": self.date_time})

    def _medication(self, node: Mapping[str, Any], path: str) -> None:
        self.fields(node, path, {"code": self.codeable})

    def _observation(self, node: Mapping[str, Any], path: str) -> None:
        for required in ("status", "code"):
            if required not in node:
                self.fail(f"{path}.{required}", "Required.")
        self.fields(node, path, {
            "status": self.string, "code": self.codeable, "subject": self.reference,
            "effectiveDateTime": self.date_time, "effectivePeriod": self.period,
            "effectiveInstant": self.instant, "issued": self.instant,
            "component": self._components})
        self.value_x(node, path)

    def _components(self, node: Any, path: str) -> None:
        for i, item in enumerate(self.array(node, path)):
            at = f"{path}[{i}]"
            if self.obj(item, at):
                if "code" not in item:
                    self.fail(f"{at}.code", "Required.")
                else:
                    self.codeable(item["code"], f"{at}.code")
                self.value_x(item, at)

