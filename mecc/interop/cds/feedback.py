"""CDS Hooks feedback: what the user did with a card, recorded as the prompt's outcome."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from mecc.interop import fhir
from mecc.interop.cds.cards import OVERRIDE_REASON_SYSTEM, OVERRIDE_REASONS, suggestion_uuid
from mecc.interop.cds.clients import Caller
from mecc.platform.errors import NotFound, ValidationFailed, describe
from mecc.platform.runtime import Runtime
from mecc.prompts.service import record_outcome
from mecc.store.models import Prompt, PromptOutcome

OUTCOME_FOR_REASON = {code: outcome for code, _, outcome in OVERRIDE_REASONS}
MAX_FEEDBACK = 100


@dataclass(frozen=True)
class Feedback:
    card: str
    outcome: str  # accepted | overridden
    accepted: tuple[str, ...]
    reason: Mapping[str, Any] | None
    comment: str | None
    timestamp: str


def parse_feedback(body: Any) -> list[Feedback]:
    errors: dict[str, list[str]] = {}
    items = body.get("feedback") if isinstance(body, Mapping) else None
    if not isinstance(items, list) or not items or len(items) > MAX_FEEDBACK:
        raise ValidationFailed("The body is {\"feedback\": [...]} with 1 to "
                               f"{MAX_FEEDBACK} items.",
                               errors={"feedback": [f"Must be a list of 1 to {MAX_FEEDBACK} "
                                                    "feedback items."]})
    found: list[Feedback] = []
    for i, item in enumerate(items):
        at = f"feedback[{i}]"
        if not isinstance(item, Mapping):
            errors[at] = ["Must be a JSON object."]
            continue
        card = item.get("card")
        if not isinstance(card, str) or not card.strip():
            errors[f"{at}.card"] = ["Required: the card's uuid."]
        outcome = item.get("outcome")
        if outcome not in ("accepted", "overridden"):
            errors[f"{at}.outcome"] = ["Must be 'accepted' or 'overridden'."]
        stamp = item.get("outcomeTimestamp")
        if not isinstance(stamp, str) or not fhir.has_time_and_zone(stamp) \
                or fhir.parse_datetime(stamp) is None:
            errors[f"{at}.outcomeTimestamp"] = ["Required: an ISO 8601 date-time in UTC, "
                                                "e.g. 2021-12-11T10:05:31Z."]
        accepted: list[str] = []
        raw = item.get("acceptedSuggestions", [])
        if not isinstance(raw, list):
            errors[f"{at}.acceptedSuggestions"] = ["Must be a list of {\"id\": ...}."]
        else:
            for j, entry in enumerate(raw):
                if isinstance(entry, Mapping) and isinstance(entry.get("id"), str):
                    accepted.append(entry["id"])
                else:
                    errors[f"{at}.acceptedSuggestions[{j}].id"] = ["Required: a string."]
        override = item.get("overrideReason")
        reason = comment = None
        if override is not None:
            if not isinstance(override, Mapping):
                errors[f"{at}.overrideReason"] = ["Must be a JSON object."]
            else:
                reason = override.get("reason")
                if reason is not None and not (isinstance(reason, Mapping) and isinstance(
                        reason.get("code"), str)):
                    errors[f"{at}.overrideReason.reason"] = ["Must be a Coding with a code."]
                comment = override.get("userComment")
                if comment is not None and not isinstance(comment, str):
                    errors[f"{at}.overrideReason.userComment"] = ["Must be a string."]
        if not any(k.startswith(at) for k in errors):
            found.append(Feedback(str(card), str(outcome), tuple(accepted),
                                  reason if isinstance(reason, Mapping) else None,
                                  comment[:1000] if isinstance(comment, str) else None,
                                  str(stamp)))
    if errors:
        raise ValidationFailed(describe(errors), errors=errors)
    return found


def outcome_for(item: Feedback, prompt: Prompt) -> dict[str, Any]:
    """The prompt outcome a piece of feedback records."""
    if item.outcome == "accepted":
        chosen = [s for i, s in enumerate(prompt.suggestions or [])
                  if suggestion_uuid(prompt.id, i) in item.accepted]
        if chosen:
            service_id = chosen[0].get("service_id")
            body: dict[str, Any] = {"outcome": "referred"}
            if service_id:
                body["service_id"] = service_id
            note = f"CDS Hooks feedback: suggestion accepted at {item.timestamp}"
        else:
            body = {"outcome": "conversation_had"}
            note = f"CDS Hooks feedback: card accepted at {item.timestamp}"
    else:
        code = None
        if item.reason and item.reason.get("system") == OVERRIDE_REASON_SYSTEM:
            code = item.reason.get("code")
        body = {"outcome": OUTCOME_FOR_REASON.get(str(code), "not_now")}
        given = (f"{item.reason.get('system')}|{item.reason.get('code')}" if item.reason
                 else "no reason")
        note = f"CDS Hooks feedback: overridden ({given}) at {item.timestamp}"
    if item.comment:
        note += f": {item.comment}"
    body["note"] = note
    return body


def record_feedback(runtime: Runtime, caller: Caller, items: Sequence[Feedback]) -> int:
    """Record each piece of feedback as a prompt outcome; unknown cards: 404, nothing recorded.

    The same feedback sent twice (same outcome, service and note) is recorded once.
    """
    principal = caller.principal
    plans: list[tuple[str, dict[str, Any]]] = []
    with runtime.db.session() as session:
        missing = []
        for item in items:
            prompt = session.get(Prompt, item.card) if _is_uuid(item.card) else None
            if prompt is None or not principal.may_access(prompt.organisation):
                missing.append(item.card)
                continue
            plans.append((prompt.id, outcome_for(item, prompt)))
        if missing:
            raise NotFound("No card with uuid " + ", ".join(sorted(set(missing))) +
                           "; nothing was recorded.",
                           errors={"feedback.card": [f"Unknown card {m}." for m in missing]})
    recorded = 0
    for prompt_id, body in plans:
        with runtime.db.session() as session:
            latest = session.scalar(select(PromptOutcome).where(
                PromptOutcome.prompt_id == prompt_id).order_by(PromptOutcome.id.desc()))
            if latest is not None and (latest.outcome, latest.service_id, latest.note) == (
                    body["outcome"], body.get("service_id"), body["note"]):
                continue  # the same feedback again
        try:
            record_outcome(runtime, principal, prompt_id, body)
        except ValidationFailed:
            # The suggested service has left the directory since the card was shown.
            record_outcome(runtime, principal, prompt_id,
                           {k: v for k, v in body.items() if k != "service_id"})
        recorded += 1
    return recorded


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
