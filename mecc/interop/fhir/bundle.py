"""`POST /api/v1/fhir`: a collection or transaction Bundle -> located resources -> the event.

Also `explain_errors`: the contact event's own validation errors, each also put under the FHIR
element the value came from, so a sender sees which resource to fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mecc.clinical.catalogue import Catalogue
from mecc.interop.fhir.checker import Checker
from mecc.interop.fhir.mapper import map_resources
from mecc.interop.fhir.model import Defaults, Located, MappingResult, Origin
from mecc.interop.fhir.terms import CodeTables

BUNDLE_TYPES = ("collection", "transaction")


def bundle_resources(body: Any) -> list[Located]:
    """The resources of a collection or transaction Bundle, checked for shape."""
    return read_bundle(body)[0]


def read_bundle(body: Any) -> tuple[list[Located], list[dict[str, Any]]]:
    """The resources of a collection or transaction Bundle, and the entries left out (an entry
    that holds no resource is reported, not refused: nothing in it could be mapped)."""
    checker = Checker()
    if not isinstance(body, Mapping):
        checker.fail("Bundle", "The body must be a FHIR Bundle (a JSON object).")
        checker.raise_if_any()
    if body.get("resourceType") != "Bundle":
        checker.fail("Bundle.resourceType", "Must be 'Bundle' (send a collection or "
                     "transaction Bundle holding a Patient, an Encounter, Conditions and "
                     "Observations).")
        checker.raise_if_any()
    if body.get("type") not in BUNDLE_TYPES:
        checker.fail("Bundle.type", f"Must be one of {', '.join(BUNDLE_TYPES)}.")
    entries = body.get("entry", [])
    found: list[Located] = []
    skipped: list[dict[str, Any]] = []
    for i, entry in enumerate(checker.array(entries, "Bundle.entry")):
        path = f"Bundle.entry[{i}]"
        if not isinstance(entry, Mapping):
            skipped.append({"from": path, "reason": "Not a JSON object; nothing in it is "
                            "used."})
            continue
        request = entry.get("request")
        if isinstance(request, Mapping) and request.get("method") == "DELETE":
            # A transaction's DELETE entry removes a resource: nothing of it describes the contact.
            continue
        full_url = entry.get("fullUrl")
        if full_url is not None and not isinstance(full_url, str):
            skipped.append({"from": path, "element": "fullUrl",
                            "reason": "fullUrl is not a string; it is not used."})
            full_url = None
        resource = entry.get("resource")
        if not isinstance(resource, Mapping) or not isinstance(
                resource.get("resourceType"), str) or not resource["resourceType"]:
            skipped.append({"from": path, "element": "resource",
                            "reason": "No resource with a resourceType: nothing in this "
                                      "entry is used."})
            continue
        found.append(Located(resource, f"{path}.resource", full_url or None))
    checker.raise_if_any()
    return found, skipped


def map_bundle(body: Any, *, catalogue: Catalogue, defaults: Defaults,
               terms: CodeTables | None = None) -> MappingResult:
    """Map a Bundle to a contact event (raises ValidationFailed when it cannot be mapped)."""
    resources, skipped = read_bundle(body)
    result = map_resources(resources, catalogue=catalogue, defaults=defaults, terms=terms)
    result.ignored[:0] = skipped
    return result


def explain_errors(errors: Mapping[str, list[str]], provenance: Mapping[str, Origin]
                   ) -> dict[str, list[str]]:
    """The contact event's validation errors, each also under the FHIR element it came from.

    `facts.bmi: Must be between 10 and 100.` becomes that message (naming Observation/bmi-1)
    under `facts.bmi` and under `Bundle.entry[2].resource.valueQuantity.value`.
    """
    out: dict[str, list[str]] = {}
    for path, messages in errors.items():
        origin = _origin_for(path, provenance)
        if origin is None:
            out.setdefault(path, []).extend(messages)
            continue
        out.setdefault(path, []).extend(f"{m} (from {origin.ref}, {origin.path})"
                                        for m in messages)
        out.setdefault(origin.path, []).extend(f"{path}: {m} ({origin.ref})" for m in messages)
    return out


def _origin_for(path: str, provenance: Mapping[str, Origin]) -> Origin | None:
    """The origin of the event path, else of its nearest parent (`facts.x.y` -> `facts.x`)."""
    parts = path.split(".")
    while parts:
        origin = provenance.get(".".join(parts))
        if origin is not None:
            return origin
        parts.pop()
    return None
