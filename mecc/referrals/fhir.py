"""A referral as FHIR R4: the ServiceRequest (what was asked of which service, for whom, why)
and the Task that follows it (where it has got to), in a collection Bundle.

The person is named only by the pseudonymous id the sending system chose (never an NHS number
or a display label); the latest personal-outcome scores ride on Task.output.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from mecc.intake.read import iso
from mecc.store.referrals import PERSONAL_OUTCOME_ITEMS, PersonalOutcome, Referral

SYSTEM = "https://mecc-prompts.example/fhir"  # our own code systems and identifiers
SNOMED = "http://snomed.info/sct"
# The statements as a person reads them (after the self-management briefing's six items).
STATEMENTS = {
    "better_able_to_manage": "I feel better able to manage my long-term condition(s)",
    "support_around_me": "I have the support I need around me",
    "hope_for_future": "I feel hopeful about the future",
    "know_what_helps": "I know what helps me to stay well",
    "involved_in_decisions": "I am involved in decisions about my care and support",
    "able_to_articulate_needs": "I can say what matters to me and what I need",
}
_TASK_NAMESPACE = uuid.UUID("0b0c5b1e-6c43-4f53-9a57-6a0b7f0ac214")
_TASK_STATUS = {"requested": "requested", "accepted": "accepted", "declined": "rejected",
                "attended": "in-progress", "did_not_attend": "on-hold"}
_WORDS = {"did_not_attend": "did not attend"}


def _service_request_status(r: Referral) -> str:
    if r.status == "declined":
        return "revoked"
    if r.status == "closed":
        return "completed" if r.attendance == "attended" else "revoked"
    return "active"


def _task_status(r: Referral) -> str:
    if r.status == "closed":
        return "completed" if r.attendance == "attended" else "cancelled"
    return _TASK_STATUS[r.status]


def task_id(r: Referral) -> str:
    return str(uuid.uuid5(_TASK_NAMESPACE, r.id))


def _subject(r: Referral) -> dict[str, Any]:
    return {"identifier": {"system": f"{SYSTEM}/person-id/{r.source}", "value": r.person_id}}


def _service(r: Referral) -> dict[str, Any]:
    return {"identifier": {"system": f"{SYSTEM}/service-id", "value": r.service_id},
            "display": r.service_name}


def _requester(r: Referral) -> dict[str, Any] | None:
    if r.staff_id is None:
        return None
    return {"identifier": {"system": f"{SYSTEM}/staff-id/{r.organisation}",
                           "value": r.staff_id}}


def service_request(r: Referral) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest", "id": r.id,
        "identifier": [{"system": f"{SYSTEM}/referral-id", "value": r.id}],
        "status": _service_request_status(r), "intent": "order",
        "category": [{"coding": [{"system": SNOMED, "code": "3457005",
                                  "display": "Patient referral"}]}],
        "code": {"coding": [{"system": f"{SYSTEM}/service-type", "code": r.service_type}],
                 "text": r.service_name},
        "subject": _subject(r), "authoredOn": iso(r.opened_at),
        "performer": [_service(r)],
        "reasonCode": [{"coding": [{"system": f"{SYSTEM}/topic", "code": r.topic}],
                        "text": r.topic.replace("_", " ")}],
    }
    requester = _requester(r)
    if requester is not None:
        resource["requester"] = requester
    return resource


def task(r: Referral, latest: PersonalOutcome | None) -> dict[str, Any]:
    words = _WORDS.get(r.status, r.status)
    resource: dict[str, Any] = {
        "resourceType": "Task", "id": task_id(r),
        "identifier": [{"system": f"{SYSTEM}/referral-id", "value": r.id}],
        "basedOn": [{"reference": f"urn:uuid:{r.id}"}],
        "focus": {"reference": f"urn:uuid:{r.id}"},
        "status": _task_status(r),
        "businessStatus": {"coding": [{"system": f"{SYSTEM}/referral-status", "code": r.status,
                                       "display": words}], "text": words},
        "intent": "order", "for": _subject(r), "authoredOn": iso(r.opened_at),
        "lastModified": iso(r.updated_at), "owner": _service(r),
    }
    requester = _requester(r)
    if requester is not None:
        resource["requester"] = requester
    if r.accepted_at is not None or r.closed_at is not None:
        period = {"start": iso(r.accepted_at or r.opened_at)}
        if r.closed_at is not None:
            period["end"] = iso(r.closed_at)
        resource["executionPeriod"] = period
    if latest is not None:
        resource["output"] = [
            {"type": {"coding": [{"system": f"{SYSTEM}/personal-outcome", "code": item}],
                      "text": STATEMENTS[item]},
             "valueInteger": getattr(latest, item)}
            for item in PERSONAL_OUTCOME_ITEMS if getattr(latest, item) is not None]
    return resource


def referral_bundle(r: Referral, latest: PersonalOutcome | None, *,
                    now: datetime) -> dict[str, Any]:
    return {
        "resourceType": "Bundle", "type": "collection", "timestamp": iso(now),
        "entry": [{"fullUrl": f"urn:uuid:{r.id}", "resource": service_request(r)},
                  {"fullUrl": f"urn:uuid:{task_id(r)}", "resource": task(r, latest)}],
    }
