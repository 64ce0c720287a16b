"""The values the mapping takes and gives: located resources, request defaults, the result."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Located:
    """A resource and where it sits in the request (for error paths and provenance)."""

    resource: Mapping[str, Any]
    path: str  # e.g. "Bundle.entry[2].resource" or "prefetch.patient"
    full_url: str | None = None
    synthetic: bool = False  # made up from CDS context (no resource was sent)

    @property
    def type(self) -> str:
        return str(self.resource.get("resourceType"))

    @property
    def id(self) -> str | None:
        """Resource.id; else, in a transaction Bundle whose server assigns the ids, the id the
        entry's fullUrl gives it (`urn:uuid:X` -> X, `https://x/fhir/Patient/7` -> 7)."""
        value = self.resource.get("id")
        if isinstance(value, str):
            return value
        return id_from_full_url(self.full_url, self.type)

    @property
    def id_element(self) -> str:
        """Where the id came from (for `mapped`)."""
        return "id" if isinstance(self.resource.get("id"), str) else "fullUrl"

    @property
    def ref(self) -> str:
        if self.id:
            return f"{self.type}/{self.id}"
        return self.full_url or self.path

    def at(self, element: str) -> str:
        if element == "fullUrl" and self.path.endswith(".resource"):
            return self.path.removesuffix(".resource") + ".fullUrl"  # the entry's, not ours
        return f"{self.path}.{element}" if element else self.path


def id_from_full_url(full_url: str | None, kind: str) -> str | None:
    """The id a fullUrl names: the uuid of `urn:uuid:`, the oid of `urn:oid:`, or the last
    segment of a RESTful URL of this resource type."""
    if not full_url:
        return None
    for prefix in ("urn:uuid:", "urn:oid:"):
        if full_url.startswith(prefix):
            return full_url[len(prefix):] or None
    parts = [p for p in full_url.split("/_history/")[0].split("/") if p]
    if len(parts) >= 2 and parts[-2] == kind:
        return parts[-1]
    return None


@dataclass(frozen=True)
class Origin:
    """Where a value of the contact event came from."""

    ref: str  # "Observation/bmi-1"
    path: str  # "Bundle.entry[2].resource.valueQuantity.value"


@dataclass(frozen=True)
class Defaults:
    """What the request itself supplies: the key or client, the query, the CDS context."""

    source: str
    organisation: str | None  # the key's / client's ODS code; None when bound to all
    event_id: str | None = None  # CDS: hookInstance (else the Encounter's identifier or id)
    occurred_at: datetime | None = None  # CDS patient-view: now, whatever the Encounter says
    occurred_at_fallback: datetime | None = None  # CDS encounter-start: now, if no period.start
    staff_reference: str | None = None  # CDS: context.userId
    staff_origin: str = "context.userId"


@dataclass
class MappingResult:
    """The contact event, and what was used (`mapped`) and not used (`ignored`), and why."""

    event: dict[str, Any]
    mapped: list[dict[str, Any]] = field(default_factory=list)
    ignored: list[dict[str, Any]] = field(default_factory=list)
    provenance: dict[str, Origin] = field(default_factory=dict)  # event path -> its origin


def slug_source(name: str) -> str:
    """A key name or an issuer as a source: no spaces or control characters, <= 100 chars."""
    text = re.sub(r"[\s\x00-\x1f\x7f]+", "-", name.strip()).strip("-")
    return (text or "fhir")[:100]
