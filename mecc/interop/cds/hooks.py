"""CDS Hooks calls: the request checked, its prefetch mapped to a contact event, the event
stored and evaluated in the request, the cards answered.

A hook call is mapped through mecc.interop.fhir (the same mapping as `POST /api/v1/fhir`),
stored and validated like any contact event, then evaluated by the one evaluation service
(mecc.evaluation.service, as a worker would) with the live rules and person-centred
suppression, and answered with one card per shown prompt.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from mecc.evaluation import service as evaluation
from mecc.intake import service as intake
from mecc.interop import fhir
from mecc.interop.cds.cards import build_cards
from mecc.interop.cds.clients import Caller
from mecc.interop.cds.fetch import fetch_missing
from mecc.interop.cds.services import IDENT, CdsService
from mecc.platform.db import utcnow
from mecc.platform.errors import Conflict, MeccError, ValidationFailed, describe
from mecc.platform.observability import EVENTS_ACCEPTED, EVENTS_DUPLICATE
from mecc.platform.runtime import Runtime
from mecc.store.models import Event, Prompt

log = logging.getLogger(__name__)
# A second request for the same hookInstance waits this long for the first to finish.
DUPLICATE_WAIT = 3.0


class PreconditionFailed(MeccError):
    status, title, slug = 412, "Precondition Failed", "precondition-failed"


@dataclass
class HookRequest:
    hook: str
    hook_instance: str
    context: dict[str, Any]
    prefetch: dict[str, Any]
    body: dict[str, Any]  # without fhirAuthorization: the idempotency fingerprint


def parse_hook_request(body: Any, svc: CdsService) -> HookRequest:
    errors: dict[str, list[str]] = {}
    if not isinstance(body, Mapping):
        raise ValidationFailed("The body must be a CDS Hooks request (a JSON object).",
                               errors={"body": ["Must be a JSON object."]})
    hook = body.get("hook")
    if hook != svc.hook:
        errors["hook"] = [f"This service answers the '{svc.hook}' hook."]
    instance = body.get("hookInstance")
    if not isinstance(instance, str) or not IDENT.match(instance) or len(instance) > 200:
        errors["hookInstance"] = ["Required: a UUID (no spaces, at most 200 characters)."]
    context = body.get("context")
    if not isinstance(context, Mapping):
        errors["context"] = ["Required: a JSON object."]
        context = {}
    for name in ("patientId", "userId", "encounterId"):
        value = context.get(name)
        if value is None:
            if name == "patientId":
                errors["context.patientId"] = ["Required."]
            continue
        if not isinstance(value, str) or not value.strip():
            errors[f"context.{name}"] = ["Must be a non-empty string."]
    prefetch = body.get("prefetch")
    if prefetch is None:
        prefetch = {}
    elif not isinstance(prefetch, Mapping):
        errors["prefetch"] = ["Must be a JSON object."]
        prefetch = {}
    if errors:
        raise ValidationFailed(describe(errors), errors=errors)
    return HookRequest(hook=str(hook), hook_instance=str(instance), context=dict(context),
                       prefetch=dict(prefetch),
                       body={k: v for k, v in body.items() if k != "fhirAuthorization"})


def hook_resources(req: HookRequest) -> tuple[list[fhir.Located], list[dict[str, Any]]]:
    """The prefetched resources for the mapping (412 without the Patient), and what was left."""
    checker = fhir.Checker()
    found: list[fhir.Located] = []
    ignored: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for key, value in req.prefetch.items():
        where = f"prefetch.{key}"
        if value is None:
            continue
        if not isinstance(value, Mapping) or not isinstance(value.get("resourceType"), str):
            checker.fail(where, "Must be a FHIR resource, a Bundle, or null.")
            continue
        if value["resourceType"] == "OperationOutcome":
            ignored.append({"from": where, "reason": "The client could not prefetch it "
                            "(OperationOutcome)."})
            continue
        if value["resourceType"] == "Bundle":
            entries = value.get("entry", [])
            for i, entry in enumerate(checker.array(entries, f"{where}.entry")):
                path = f"{where}.entry[{i}]"
                if not checker.obj(entry, path):
                    continue
                resource = entry.get("resource")
                if not isinstance(resource, Mapping) or not isinstance(
                        resource.get("resourceType"), str):
                    checker.fail(f"{path}.resource", "Required: a FHIR resource.")
                    continue
                if resource["resourceType"] == "OperationOutcome":
                    ignored.append({"from": f"{path}.resource", "reason": "OperationOutcome "
                                    "from the client's prefetch."})
                    continue
                full_url = entry.get("fullUrl") if isinstance(entry.get("fullUrl"), str) \
                    else None
                found.append(fhir.Located(resource, f"{path}.resource", full_url))
            continue
        found.append(fhir.Located(value, where))
    checker.raise_if_any("The prefetched FHIR content is not valid")
    unique: list[fhir.Located] = []
    for loc in found:
        ident = (loc.type, loc.id or "")
        if loc.id and ident in seen:
            continue
        seen.add(ident)
        unique.append(loc)
    patient_id = req.context["patientId"]
    kept: list[fhir.Located] = []
    for loc in unique:
        if loc.type == "Patient" and loc.id != patient_id:
            ignored.append({"from": loc.ref, "reason": f"Not the patient in context "
                            f"(Patient/{patient_id})."})
            continue
        if loc.type == "Encounter" and loc.id != req.context.get("encounterId"):
            ignored.append({"from": loc.ref, "reason": "Not the encounter in context."})
            continue
        kept.append(loc)
    if not any(loc.type == "Patient" for loc in kept):
        raise PreconditionFailed(
            f"The prefetch must hold Patient/{patient_id} (prefetch key 'patient', template "
            "Patient/{{context.patientId}}), or the call must name a fhirServer registered "
            "for this client (with fhirAuthorization) for the service to fetch it from.",
            errors={"prefetch.patient": [f"Patient/{patient_id} is required."]})
    if not any(loc.type == "Encounter" for loc in kept):
        encounter_id = req.context.get("encounterId") or req.hook_instance
        kept.append(fhir.Located({"resourceType": "Encounter", "id": encounter_id},
                                 "context.encounterId", synthetic=True))
    return kept, ignored


def map_hook(req: HookRequest, caller: Caller, svc: CdsService, catalogue: Any,
             now: datetime, terms: fhir.CodeTables | None = None) -> fhir.MappingResult:
    resources, ignored = hook_resources(req)
    principal = caller.principal
    defaults = fhir.Defaults(
        source=caller.source,
        organisation=None if principal.is_all_organisations else principal.organisation,
        event_id=req.hook_instance,
        occurred_at=now if svc.hook == "patient-view" else None,
        occurred_at_fallback=now,
        staff_reference=req.context.get("userId"))
    result = fhir.map_resources(resources, catalogue=catalogue, defaults=defaults, terms=terms)
    result.ignored[:0] = ignored
    return result


@dataclass
class HookAnswer:
    event: Event
    prompts: list[Prompt]
    created: bool


def call_service(runtime: Runtime, caller: Caller, svc: CdsService, body: Any) -> dict[str, Any]:
    """Store the hook call as a contact event, evaluate it now, answer its cards."""
    req = parse_hook_request(body, svc)
    # What the prefetch lacks, from the call's fhirServer (fetch.py); the stored request (and
    # so its idempotency) is the call as sent.
    fetched = fetch_missing(body, req.context, req.prefetch, svc, caller)
    req.prefetch.update(fetched.found)
    try:
        result = map_hook(req, caller, svc, runtime.catalogue, utcnow(),
                          fhir.code_tables(runtime.settings.config_dir))
    except PreconditionFailed as exc:
        if fetched.problems:
            raise PreconditionFailed(f"{exc.detail} Fetching: {'; '.join(fetched.problems)}.",
                                     errors=exc.errors) from None
        raise
    result.ignored[:0] = fetched.notes
    row, created = _store_event(runtime, caller, req, result)
    answer = _evaluate(runtime, row, created)
    with runtime.db.session() as session:
        cards = build_cards(session, answer.prompts)
    return {"cards": cards}


def _store_event(runtime: Runtime, caller: Caller, req: HookRequest,
                 result: fhir.MappingResult) -> tuple[Event, bool]:
    """Validate and store the mapped event; (row, created). The same hookInstance again
    (same request) finds the stored event; a different request under it is a conflict."""
    principal = caller.principal
    try:
        data = intake.validate_event(runtime, result.event)
    except ValidationFailed as exc:
        errors = fhir.explain_errors(exc.errors, result.provenance)
        intake.count_rejection(exc)
        raise ValidationFailed(describe(errors), errors=errors) from None
    try:
        intake.authorise_event(principal, data)
    except MeccError as exc:
        intake.count_rejection(exc)
        raise
    row = intake.build_row(runtime, principal, req.body, data)
    if caller.client_id is not None:
        row.api_key_id = None  # a CDS client, not an API key
    with runtime.db.session() as session:
        session.add(row)
        try:
            session.commit()
            created = True
        except IntegrityError:
            session.rollback()
            existing = session.scalar(select(Event).where(
                Event.organisation == row.organisation, Event.source == row.source,
                Event.event_id == row.event_id))
            if existing is None:
                raise
            if existing.body_hash != row.body_hash:
                conflict = Conflict(f"hookInstance '{row.event_id}' from '{row.source}' was "
                                    "already answered for a different request.")
                intake.count_rejection(conflict)
                raise conflict from None
            created = False
            row = existing
            session.expunge(existing)
    if created:
        EVENTS_ACCEPTED.labels("cds").inc()
    else:
        EVENTS_DUPLICATE.inc()
    return row, created


def _evaluate(runtime: Runtime, row: Event, created: bool) -> HookAnswer:
    """Evaluate the event here; or, if someone else holds its claim, wait for them briefly."""
    deadline = time.monotonic() + DUPLICATE_WAIT
    while True:
        evaluation.evaluate_events(runtime, [row.id])
        with runtime.db.session() as session:
            status = session.scalar(select(Event.status).where(Event.id == row.id))
            prompts = list(session.scalars(
                select(Prompt).where(Prompt.event_id == row.id, Prompt.status != "deferred")
                .order_by(Prompt.priority.desc(), Prompt.rule_key)))
            for prompt in prompts:
                session.expunge(prompt)
        # Another request (the same hookInstance at once) holds the claim: wait for it
        # briefly, then answer with what is stored.
        if status not in ("queued", "processing") or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if status == "failed":
        log.warning("cds event evaluation failed", extra={"event": row.id})
    return HookAnswer(row, prompts, created)
