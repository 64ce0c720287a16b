"""CDS Hooks: fetching what the prefetch lacks from the client's FHIR server.

When a call's prefetch is missing or partial and it names a `fhirServer`, the service runs its
own prefetch templates (services.py) as FHIR reads and searches against that server, with the
call's `fhirAuthorization` bearer token. The server's host must be on the registered client's
`fhir_servers` allow-list, and every URL (the next pages too) passes the webhook SSRF checks of
mecc.delivery.webhook_client: the address is resolved and checked once and connected to as
checked, private addresses only when listed themselves, no redirects, bounded time and size.
A fetch that fails is reported in `ignored`; the call answers 412 only when neither the
prefetch nor the server gave the Patient.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from mecc.delivery.webhook_client import (
    Fetched,
    Refused,
    Timeouts,
    Unresolvable,
    get,
    host_allowed,
    resolve_target,
)
from mecc.interop.cds.clients import Caller
from mecc.interop.cds.services import CdsService

# One request waits at most this long; all of one call's fetches together at most BUDGET.
TIMEOUTS = Timeouts(connect=2.0, total=4.0)
BUDGET = 8.0
MAX_PAGES = 5  # of one search (a searchset's `next` links)
MAX_BYTES = 5_000_000  # of one answer
PLACEHOLDER = re.compile(r"\{\{\s*context\.([A-Za-z]+)\s*\}\}")
FETCHED = "fetched:"  # prefix of the prefetch keys filled here (paths say where data came from)


@dataclass
class Fetch:
    """What was fetched (prefetch key -> resource or Bundle), and what went wrong."""

    found: dict[str, Any] = field(default_factory=dict)
    notes: list[dict[str, Any]] = field(default_factory=list)  # for `ignored`
    problems: list[str] = field(default_factory=list)  # for a 412's detail


def _types(value: Any) -> set[str]:
    if not isinstance(value, Mapping):
        return set()
    if value.get("resourceType") != "Bundle":
        return {str(value.get("resourceType"))}
    entries = value.get("entry")
    return {str(e["resource"].get("resourceType")) for e in entries or []
            if isinstance(e, Mapping) and isinstance(e.get("resource"), Mapping)} \
        if isinstance(entries, list) else set()


def missing(prefetch: Mapping[str, Any], svc: CdsService) -> dict[str, str]:
    """The service's templates whose data the prefetch does not hold: a key sent as null (the
    client could not prefetch it) or not sent, unless another key holds that resource type
    (a client's own key names, e.g. `patientToGreet`)."""
    sent = set().union(*(_types(v) for v in prefetch.values())) if prefetch else set()
    out: dict[str, str] = {}
    for key, template in svc.prefetch.items():
        if prefetch.get(key) is not None:
            continue
        kind = re.split(r"[/?]", template, maxsplit=1)[0]
        if key not in prefetch and kind in sent:
            continue
        out[key] = template
    return out


def render(template: str, context: Mapping[str, Any]) -> str | None:
    """A template with its context placeholders filled (URL-quoted); None when one is absent."""
    absent = False

    def fill(match: re.Match[str]) -> str:
        nonlocal absent
        value = context.get(match.group(1))
        if not isinstance(value, str) or not value:
            absent = True
            return ""
        return quote(value, safe="")

    text = PLACEHOLDER.sub(fill, template)
    return None if absent else text


def fetch_missing(body: Mapping[str, Any], context: Mapping[str, Any],
                  prefetch: Mapping[str, Any], svc: CdsService, caller: Caller) -> Fetch:
    """Fetch the service's templates the prefetch lacks from the call's fhirServer."""
    result = Fetch()
    wanted = missing(prefetch, svc)
    server = body.get("fhirServer")
    if not wanted or not isinstance(server, str) or not server.strip():
        return result
    if not caller.fhir_servers:
        result.problems.append("this client has no FHIR server registered, so nothing is "
                               "fetched (`mecc cds-clients add --fhir-server HOST`)")
        return result
    parts = urlsplit(server.strip())
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if not host_allowed((parts.hostname or "").lower(), port, caller.fhir_servers):
        result.problems.append(f"fhirServer host '{parts.hostname}' is not one of this "
                               "client's registered FHIR servers")
        return result
    headers = {"Accept": "application/fhir+json"}
    auth = body.get("fhirAuthorization")
    if isinstance(auth, Mapping) and isinstance(auth.get("access_token"), str) \
            and str(auth.get("token_type", "Bearer")).lower() == "bearer":
        headers["Authorization"] = f"Bearer {auth['access_token']}"
    deadline = time.monotonic() + BUDGET
    for key, template in wanted.items():
        query = render(template, context)
        if query is None:
            continue  # e.g. {{context.encounterId}} on patient-view
        found = _fetch(server.rstrip("/") + "/" + query, caller, headers, deadline, result,
                       key)
        if found is not None:
            result.found[FETCHED + key] = found
    return result


def _fetch(url: str, caller: Caller, headers: Mapping[str, str], deadline: float,
           result: Fetch, key: str) -> Any:
    """One read, or one search with its next pages merged; None (reported) when it fails."""
    pages: list[Mapping[str, Any]] = []
    next_url: str | None = url
    while next_url and len(pages) < MAX_PAGES:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            _note(result, key, "the time for fetching ran out")
            break
        try:
            target = resolve_target(next_url, caller.fhir_servers)
        except (Refused, Unresolvable) as exc:
            _note(result, key, f"not fetched: {exc}")
            break
        got = get(target, headers, Timeouts(TIMEOUTS.connect, min(TIMEOUTS.total, remaining)),
                  MAX_BYTES)
        doc = _document(got, result, key)
        if doc is None:
            break
        pages.append(doc)
        next_url = _next_link(doc)
    if not pages:
        return None
    first = pages[0]
    if first.get("resourceType") != "Bundle" or len(pages) == 1:
        return first
    entries = [e for page in pages for e in page.get("entry") or [] if isinstance(e, Mapping)]
    return {**first, "entry": entries}


def _document(got: Fetched, result: Fetch, key: str) -> Mapping[str, Any] | None:
    if got.error is not None or got.status_code is None:
        _note(result, key, f"the FHIR server could not be read: {got.error}")
        return None
    if got.status_code != 200:
        _note(result, key, f"the FHIR server answered {got.status_code}")
        return None
    try:
        doc = json.loads(got.body)
    except (ValueError, UnicodeDecodeError):
        _note(result, key, "the FHIR server's answer is not JSON")
        return None
    if not isinstance(doc, Mapping) or not isinstance(doc.get("resourceType"), str):
        _note(result, key, "the FHIR server's answer is not a FHIR resource")
        return None
    if doc["resourceType"] == "OperationOutcome":
        _note(result, key, "the FHIR server answered with an OperationOutcome")
        return None
    return doc


def _next_link(doc: Mapping[str, Any]) -> str | None:
    for link in doc.get("link") or [] if doc.get("resourceType") == "Bundle" else []:
        if isinstance(link, Mapping) and link.get("relation") == "next" \
                and isinstance(link.get("url"), str):
            return str(link["url"])
    return None


def _note(result: Fetch, key: str, reason: str) -> None:
    result.notes.append({"from": f"fhirServer ({key})", "reason": reason})
    result.problems.append(f"{key}: {reason}")
