"""The services directory: local and national services a prompt can refer a person to.

Pure domain code. Services are loaded from YAML in config/services/ (or written through the
admin API, which reuses `parse_service`), and `resolve_services` turns a rule's suggested
service types into concrete suggestions for one person at one contact.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mecc.clinical.domain import Service
from mecc.clinical.yaml_documents import load_entries, parse_entries

SERVICE_TYPES = (
    "stop_smoking", "alcohol_support", "weight_management", "physical_activity",
    "talking_therapies", "diabetes_prevention", "structured_education", "pulmonary_rehab",
    "cardiac_rehab", "social_prescribing", "peer_support", "health_coaching", "carers_support",
    "money_advice", "falls_prevention", "befriending",
)
# How a type reads in "Refer to a local <name> service" when the directory has no service.
SERVICE_TYPE_NAMES = {
    "stop_smoking": "stop smoking",
    "alcohol_support": "alcohol support",
    "weight_management": "weight management",
    "physical_activity": "physical activity",
    "talking_therapies": "NHS Talking Therapies",
    "diabetes_prevention": "diabetes prevention",
    "structured_education": "structured education",
    "pulmonary_rehab": "pulmonary rehabilitation",
    "cardiac_rehab": "cardiac rehabilitation",
    "social_prescribing": "social prescribing",
    "peer_support": "peer support",
    "health_coaching": "health coaching",
    "carers_support": "carers' support",
    "money_advice": "money advice",
    "falls_prevention": "falls prevention",
    "befriending": "befriending",
}

_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,79}$")
_DISTRICT = re.compile(r"^[A-Z]{1,2}[0-9][A-Z0-9]?$")  # UK outward code, e.g. M1, M14, EC1A
_ODS = re.compile(r"^[A-Z0-9]{3,12}$")
_FIELDS = frozenset({
    "id", "name", "service_type", "areas", "organisations", "self_referral", "contact",
    "referral_url", "description",
})
_CONTACT_FIELDS = ("phone", "email", "url")
_FILE_KEYS = frozenset({"services", "example", "description"})


class ServiceDirectoryError(ValueError):
    """A service definition is invalid. `errors` names each bad field by its dotted path."""

    def __init__(self, errors: Sequence[Mapping[str, Any]], *, source: str | None = None):
        self.errors = [dict(e) for e in errors]
        self.source = source
        lines = [f"{e['path'] or '(document)'}: {e['message']}" for e in self.errors]
        prefix = f"{source}: " if source else ""
        super().__init__(prefix + "; ".join(lines))


def _join(prefix: str, name: str | int) -> str:
    return f"{prefix}.{name}" if prefix else str(name)


def _is_web_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:  # e.g. "http://[" (an unclosed IPv6 address)
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def normalise_district(value: str | None) -> str | None:
    """The outward code of a postcode district or full postcode, upper case ('m14 5ab' -> M14)."""
    if not value or not value.strip():
        return None
    return value.strip().split()[0].upper()


def _strings(raw: Any, path: str, errors: list[dict[str, Any]]) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
        errors.append({"path": path, "message": "Must be a list of strings."})
        return []
    return [v.strip().upper() for v in raw]


def parse_service(mapping: Any, *, path_prefix: str = "") -> Service:
    """Validate one service definition (YAML entry or API body) and build the Service."""
    errors: list[dict[str, Any]] = []

    def fail(name: str, message: str) -> None:
        errors.append({"path": _join(path_prefix, name), "message": message})

    if not isinstance(mapping, Mapping):
        raise ServiceDirectoryError([{"path": path_prefix, "message": "Must be a mapping."}])
    for name in sorted(set(mapping) - _FIELDS, key=str):
        fail(str(name), "Unknown field.")

    service_id = mapping.get("id")
    if not isinstance(service_id, str) or not _ID.match(service_id):
        fail("id", "Must be a slug of 2-80 lower-case letters, digits and hyphens.")
    name = mapping.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        fail("name", "Must be a non-empty string of at most 200 characters.")
    service_type = mapping.get("service_type")
    if service_type not in SERVICE_TYPES:
        close = difflib.get_close_matches(str(service_type), SERVICE_TYPES, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        fail("service_type", f"Must be one of: {', '.join(SERVICE_TYPES)}.{hint}")

    areas = _strings(mapping.get("areas"), _join(path_prefix, "areas"), errors)
    for i, area in enumerate(areas):
        if not _DISTRICT.match(area):
            fail(f"areas.{i}", f"'{area}' is not a postcode district (outward code, e.g. M14).")
    organisations = _strings(mapping.get("organisations"), _join(path_prefix, "organisations"),
                             errors)
    for i, org in enumerate(organisations):
        if not _ODS.match(org):
            fail(f"organisations.{i}", f"'{org}' is not an ODS code.")

    self_referral = mapping.get("self_referral", False)
    if not isinstance(self_referral, bool):
        fail("self_referral", "Must be true or false.")

    contact: dict[str, str] = {}
    raw_contact = mapping.get("contact")
    if raw_contact is None:  # absent or null; but false, 0 or "" are not a contact
        raw_contact = {}
    if not isinstance(raw_contact, Mapping):
        fail("contact", "Must be a mapping with phone, email and/or url.")
    else:
        for key, value in raw_contact.items():
            if key not in _CONTACT_FIELDS:
                fail(f"contact.{key}", "Unknown field (use phone, email or url).")
            elif not isinstance(value, str) or not value.strip():
                fail(f"contact.{key}", "Must be a non-empty string.")
            elif key == "url" and not _is_web_url(value):
                fail("contact.url", "Must be an http(s) URL.")
            elif key == "email" and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value):
                fail("contact.email", "Must be an email address.")
            else:
                contact[key] = value.strip()

    referral_url = mapping.get("referral_url")
    if referral_url is not None and not _is_web_url(referral_url):
        fail("referral_url", "Must be an http(s) URL.")
    description = mapping.get("description", "")
    if not isinstance(description, str):
        fail("description", "Must be a string.")

    if errors:
        raise ServiceDirectoryError(errors)
    return Service(
        id=str(service_id), name=str(name).strip(), service_type=str(service_type),
        areas=frozenset(areas), organisations=frozenset(organisations),
        self_referral=self_referral, contact=contact, referral_url=referral_url,
        description=description.strip(),
    )


def service_to_dict(service: Service) -> dict[str, Any]:
    """The YAML/JSON shape of a service; `parse_service(service_to_dict(s)) == s`."""
    return {
        "id": service.id,
        "name": service.name,
        "service_type": service.service_type,
        "areas": sorted(service.areas),
        "organisations": sorted(service.organisations),
        "self_referral": service.self_referral,
        "contact": {k: service.contact[k] for k in _CONTACT_FIELDS if k in service.contact},
        "referral_url": service.referral_url,
        "description": service.description,
    }


def parse_services_document(data: Any, *, source: str | None = None) -> list[Service]:
    """Validate a whole services document: `{services: [...]}` (plus optional `example`)."""
    if not isinstance(data, Mapping) or not isinstance(data.get("services"), list):
        raise ServiceDirectoryError(
            [{"path": "", "message": "Expected a mapping with a 'services' list."}],
            source=source)
    errors: list[dict[str, Any]] = [
        {"path": str(key), "message": "Unknown field."}
        for key in sorted(set(data) - _FILE_KEYS, key=str)
    ]
    if not isinstance(data.get("example", False), bool):
        errors.append({"path": "example", "message": "Must be true or false."})
    services = parse_entries(data["services"], lambda raw, at: parse_service(raw, path_prefix=at),
                             ServiceDirectoryError, list_name="services", key="id", errors=errors)
    if errors:
        raise ServiceDirectoryError(errors, source=source)
    return services


def load_services(path_or_dir: str | Path) -> list[Service]:
    """Load and validate one services YAML file, or every *.yaml file of a directory."""
    return load_entries(path_or_dir, lambda data, file: parse_services_document(data, source=file),
                        ServiceDirectoryError, list_name="services", key="id", positions=False)


def _suggestion(service: Service) -> dict[str, Any]:
    return {
        "label": f"Refer to {service.name}",
        "service_id": service.id,
        "service_type": service.service_type,
        "name": service.name,
        "contact": dict(service.contact),
        "referral_url": service.referral_url,
        "self_referral": service.self_referral,
        # No areas: offered everywhere. Staff are told when that is all there is for the type.
        "national": not service.areas,
    }


def resolve_services(
    suggestions: Sequence[str],
    services: Sequence[Service],
    *,
    postcode_district: str | None,
    organisation: str,
) -> list[dict[str, Any]]:
    """Turn a rule's suggested service types into suggestions for this person and contact.

    A service fits when its type is suggested, its areas include the person's postcode district
    (no areas: national, fits everywhere) and its organisations include the contact's
    organisation (none listed: any). Local services come before national ones, each in directory
    order. A type with no fitting service still yields one generic suggestion, so the member of
    staff sees the action even where the directory is incomplete.
    """
    district = normalise_district(postcode_district)
    org = (organisation or "").strip().upper()
    resolved: list[dict[str, Any]] = []
    for service_type in dict.fromkeys(suggestions):  # de-duplicated, order kept
        local: list[Service] = []
        national: list[Service] = []
        for service in services:
            if service.service_type != service_type:
                continue
            if service.organisations and org not in {o.upper() for o in service.organisations}:
                continue
            if not service.areas:
                national.append(service)
            elif district and district in {a.upper() for a in service.areas}:
                local.append(service)
        if local or national:
            resolved.extend(_suggestion(s) for s in (*local, *national))
        else:
            name = SERVICE_TYPE_NAMES.get(service_type, service_type.replace("_", " "))
            resolved.append({
                "label": f"Refer to a local {name} service",
                "service_type": service_type,
                "service_id": None,
            })
    return resolved
