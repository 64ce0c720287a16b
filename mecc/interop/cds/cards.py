"""CDS Hooks cards: one card per shown prompt, with its suggestions, links and override
reasons."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from mecc.interop import fhir
from mecc.store.models import Prompt, RuleVersion

TOPIC_SYSTEM = f"{fhir.MECC_CODE_SYSTEMS}/topic"
# The service-type and service-id systems of our referral ServiceRequests (mecc/referrals/fhir.py
# uses the same), so a proposed referral and the referral it becomes name the service alike.
REFERRAL_SYSTEM = "https://mecc-prompts.example/fhir"
OVERRIDE_REASON_SYSTEM = f"{fhir.MECC_CODE_SYSTEMS}/override-reason"
# (code, display, the prompt outcome it records)
OVERRIDE_REASONS = (
    ("not-now", "Not now", "not_now"),
    ("not-appropriate", "Not appropriate", "not_appropriate"),
    ("declined-by-person", "Declined by the person", "declined"),
    ("already-addressed", "Already addressed", "conversation_had"),
)
# Suggestion uuids are derived from the prompt id and the suggestion's position, so the same
# card always carries the same suggestion uuids and feedback can be traced back.
SUGGESTION_NAMESPACE = uuid.UUID("6f1c7a52-3f0e-4d5e-9a51-2f4b8c1d9e70")
SUMMARY_LIMIT = 140  # CDS Hooks: a summary is shorter than 140 characters


def suggestion_uuid(prompt_id: str, index: int) -> str:
    return str(uuid.uuid5(SUGGESTION_NAMESPACE, f"{prompt_id}:{index}"))


def topic_display(topic: str) -> str:
    return topic.replace("_", " ").capitalize()


def fit_summary(text: str) -> str:
    text = " ".join(text.split())
    if len(text) < SUMMARY_LIMIT:
        return text
    return text[:SUMMARY_LIMIT - 2].rstrip() + "…"


def override_reasons() -> list[dict[str, str]]:
    return [{"system": OVERRIDE_REASON_SYSTEM, "code": code, "display": display}
            for code, display, _ in OVERRIDE_REASONS]


def referral_request(prompt: Prompt, suggestion: Mapping[str, Any]) -> dict[str, Any]:
    """A FHIR R4 ServiceRequest proposing the referral a suggestion offers: a draft for the
    clinician to confirm in their own system (CDS Hooks `create` action). The subject is the
    Patient in the hook's context (the event's person.id is its id); the service is the
    performer, named by its directory id (a generic suggestion names only the service type)."""
    name = suggestion.get("name") or str(suggestion.get("label") or "").removeprefix("Refer to ")
    service_type = str(suggestion.get("service_type") or prompt.topic)
    performer: dict[str, Any] = {"display": name}
    if suggestion.get("service_id"):
        performer["identifier"] = {"system": f"{REFERRAL_SYSTEM}/service-id",
                                   "value": str(suggestion["service_id"])}
    return {
        "resourceType": "ServiceRequest", "status": "draft", "intent": "proposal",
        "category": [{"coding": [{"system": fhir.SNOMED, "code": "3457005",
                                  "display": "Patient referral"}]}],
        "code": {"coding": [{"system": f"{REFERRAL_SYSTEM}/service-type", "code": service_type,
                             "display": service_type.replace("_", " ")}], "text": name},
        "subject": {"reference": f"Patient/{prompt.person_id}"},
        "performer": [performer],
        "reasonCode": [{"coding": [{"system": TOPIC_SYSTEM, "code": prompt.topic,
                                    "display": topic_display(prompt.topic)}],
                        "text": fit_summary(prompt.summary)}],
    }


def referral_action(prompt: Prompt, suggestion: Mapping[str, Any]) -> dict[str, Any]:
    request = referral_request(prompt, suggestion)
    return {"type": "create", "description": f"Propose a referral to {request['code']['text']} "
            "(a draft ServiceRequest to confirm).", "resource": request}


def card_for(prompt: Prompt, rule_title: str) -> dict[str, Any]:
    """One CDS Hooks card for one shown prompt."""
    source: dict[str, Any] = {"label": f"MECC Prompts: {rule_title}"}
    urls = [s.get("url") for s in prompt.sources or [] if isinstance(s, Mapping)
            and isinstance(s.get("url"), str) and s["url"].startswith(("https://", "http://"))]
    if urls:
        source["url"] = urls[0]
    source["topic"] = {"system": TOPIC_SYSTEM, "code": prompt.topic,
                       "display": topic_display(prompt.topic)}
    card: dict[str, Any] = {"uuid": prompt.id, "summary": fit_summary(prompt.summary),
                            "indicator": prompt.indicator, "source": source}
    if prompt.detail:
        card["detail"] = prompt.detail
    suggestions: list[dict[str, Any]] = [
        {"label": s.get("label") or "Refer", "uuid": suggestion_uuid(prompt.id, i),
         "actions": [referral_action(prompt, s)]}
        for i, s in enumerate(prompt.suggestions or []) if isinstance(s, Mapping)]
    if suggestions:
        card["suggestions"] = suggestions
        card["selectionBehavior"] = "at-most-one"
    card["overrideReasons"] = override_reasons()
    links = []
    for s in prompt.suggestions or []:
        url = s.get("referral_url")
        if isinstance(url, str) and url.startswith(("https://", "http://")):
            links.append({"label": f"{s.get('name') or s.get('label')}: referral",
                          "url": url, "type": "absolute"})
    if links:
        card["links"] = links
    return card


def build_cards(session: Session, prompts: Sequence[Prompt]) -> list[dict[str, Any]]:
    pairs = {(p.rule_key, p.rule_version) for p in prompts}
    titles: dict[tuple[str, int], str] = {}
    if pairs:
        rows = session.execute(select(RuleVersion.key, RuleVersion.version, RuleVersion.body)
                               .where(tuple_(RuleVersion.key, RuleVersion.version)
                                      .in_(list(pairs))))
        for key, version, body in rows:
            title = body.get("title") if isinstance(body, Mapping) else None
            titles[(key, version)] = title if isinstance(title, str) and title else key
    return [card_for(p, titles.get((p.rule_key, p.rule_version), p.rule_key))
            for p in prompts]

