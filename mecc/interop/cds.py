"""CDS Hooks 2.0: service definitions, client JWTs, hook calls evaluated in-request, feedback.

- Discovery lists `mecc-encounter-start` and `mecc-patient-view` with their prefetch templates.
- A client authenticates with a JWT signed by a key from the JWK Set registered for its `iss`
  (`mecc cds-clients add`; nothing is ever fetched, `jku` is ignored), or with an API key.
- A hook call is mapped through `mecc.interop.fhir` (the same mapping as `POST /api/v1/fhir`),
  stored and validated like any contact event, claimed and evaluated in the request with the live rules
  and person-centred suppression, and answered with one card per shown prompt.
- Feedback on a card records the matching prompt outcome.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt
from sqlalchemy import delete, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mecc.admin.audit import record
from mecc.admin.keys import ALL_ORGANISATIONS, Principal
from mecc.delivery import push, webhooks
from mecc.evaluation import pipeline
from mecc.intake import service as intake
from mecc.intake.read import prompt_dict
from mecc.interop import fhir
from mecc.platform.db import utcnow
from mecc.platform.errors import (
    Conflict,
    Forbidden,
    MeccError,
    NotFound,
    Unauthorized,
    ValidationFailed,
    describe,
)
from mecc.platform.observability import (
    EVALUATION_LATENCY,
    EVENTS_ACCEPTED,
    EVENTS_DUPLICATE,
    PROMPTS_CREATED,
)
from mecc.platform.runtime import Runtime
from mecc.prompts.service import record_outcome
from mecc.store.models import CdsClient, Event, Prompt, PromptOutcome, RuleVersion, UsedJti

log = logging.getLogger(__name__)

TOPIC_SYSTEM = f"{fhir.MECC_CODE_SYSTEMS}/topic"
OVERRIDE_REASON_SYSTEM = f"{fhir.MECC_CODE_SYSTEMS}/override-reason"
# (code, display, the prompt outcome it records)
OVERRIDE_REASONS = (
    ("not-now", "Not now", "not_now"),
    ("not-appropriate", "Not appropriate", "not_appropriate"),
    ("declined-by-person", "Declined by the person", "declined"),
    ("already-addressed", "Already addressed", "conversation_had"),
)
OUTCOME_FOR_REASON = {code: outcome for code, _, outcome in OVERRIDE_REASONS}
# Suggestion uuids are derived from the prompt id and the suggestion's position, so the same
# card always carries the same suggestion uuids and feedback can be traced back.
SUGGESTION_NAMESPACE = uuid.UUID("6f1c7a52-3f0e-4d5e-9a51-2f4b8c1d9e70")

ALGORITHMS = ("ES384", "RS384", "ES256", "RS256", "ES512", "RS512")
EC_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
MAX_TOKEN_AGE = 300  # seconds: `iat` older than this (plus leeway) is refused
LEEWAY = 30  # seconds of clock skew tolerated on exp / iat / nbf
ODS = re.compile(r"^[A-Z0-9]{3,10}$")
IDENT = re.compile(r"^[^\s\x00-\x1f\x7f]+$")
MAX_FEEDBACK = 100
SUMMARY_LIMIT = 140  # CDS Hooks: a summary is shorter than 140 characters


# --------------------------------------------------------------------------- services
@dataclass(frozen=True)
class CdsService:
    id: str
    hook: str
    title: str
    description: str
    prefetch: dict[str, str]

    def definition(self) -> dict[str, Any]:
        return {"hook": self.hook, "title": self.title, "description": self.description,
                "id": self.id, "prefetch": dict(self.prefetch),
                "usageRequirements": "Prefetch of the Patient is required (412 without it). "
                                     "Authenticate with a JWT signed by a key registered "
                                     "for the client's iss, or with an API key."}


def _prefetch(*, encounter: bool) -> dict[str, str]:
    codes = ",".join((*fhir.PREFETCH_LOINC, *fhir.PREFETCH_SNOMED))
    templates = {"patient": "Patient/{{context.patientId}}"}
    if encounter:
        templates["encounter"] = "Encounter/{{context.encounterId}}"
    templates["conditions"] = "Condition?patient={{context.patientId}}&clinical-status=active"
    templates["observations"] = (
        f"Observation?patient={{{{context.patientId}}}}&code={codes}&_sort=-date")
    return templates


SERVICES = {s.id: s for s in (
    CdsService(
        id="mecc-encounter-start", hook="encounter-start",
        title="MECC Prompts: Making Every Contact Count",
        description="At the start of an encounter, suggests the healthy-lifestyle conversation "
                    "or self-management / social-prescribing referral that fits this person, "
                    "with local services to refer to.",
        prefetch=_prefetch(encounter=True)),
    CdsService(
        id="mecc-patient-view", hook="patient-view",
        title="MECC Prompts: Making Every Contact Count",
        description="When a patient's record is opened, suggests the healthy-lifestyle "
                    "conversation or self-management / social-prescribing referral that fits "
                    "this person, with local services to refer to.",
        prefetch=_prefetch(encounter=False)),
)}


def discovery() -> dict[str, Any]:
    return {"services": [s.definition() for s in SERVICES.values()]}


def service(service_id: str) -> CdsService:
    found = SERVICES.get(service_id)
    if found is None:
        raise NotFound(f"No CDS service '{service_id}'; see GET /cds-services.")
    return found


class PreconditionFailed(MeccError):
    status, title, slug = 412, "Precondition Failed", "precondition-failed"


# --------------------------------------------------------------------------- JWKS and JWTs
class JwksError(ValueError):
    """A JWK Set that cannot be registered (the message says why)."""


@dataclass(frozen=True)
class ClientKey:
    jwk: jwt.PyJWK
    raw: Mapping[str, Any]


def parse_jwks(data: Any) -> dict[str | None, ClientKey]:
    """The public signing keys of a JWK Set, by kid (None: the only key, without a kid)."""
    if not isinstance(data, Mapping) or not isinstance(data.get("keys"), list) \
            or not data["keys"]:
        raise JwksError("a JWK Set is {\"keys\": [<JWK>, ...]} with at least one key")
    found: dict[str | None, ClientKey] = {}
    for index, raw in enumerate(data["keys"]):
        where = f"keys[{index}]"
        if not isinstance(raw, Mapping):
            raise JwksError(f"{where}: not a JSON object")
        if raw.get("kty") not in ("EC", "RSA"):
            raise JwksError(f"{where}: kty must be EC or RSA (symmetric keys are refused)")
        if any(k in raw for k in ("d", "p", "q", "dp", "dq", "qi")):
            raise JwksError(f"{where}: holds private key material; register the public "
                            "JWK Set only")
        if raw.get("use", "sig") != "sig":
            raise JwksError(f"{where}: use must be 'sig'")
        alg = raw.get("alg")
        if alg is not None and alg not in ALGORITHMS:
            raise JwksError(f"{where}: alg {alg!r} is not one of {', '.join(ALGORITHMS)}")
        kid = raw.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise JwksError(f"{where}: kid must be a string")
        if len(data["keys"]) > 1 and not kid:
            raise JwksError(f"{where}: every key needs a kid when the set holds several")
        if kid in found:
            raise JwksError(f"{where}: kid {kid!r} appears twice")
        try:
            found[kid] = ClientKey(jwt.PyJWK(dict(raw)), dict(raw))
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError) as exc:
            raise JwksError(f"{where}: not a usable public key ({exc})") from None
    return found


def _key_for(keys: Mapping[str | None, ClientKey], header: Mapping[str, Any]) -> ClientKey:
    kid = header.get("kid")
    if kid is not None:
        key = keys.get(kid)
        if key is None:
            raise Unauthorized(f"No key with kid {kid!r} is registered for this issuer.")
        return key
    if len(keys) == 1:
        return next(iter(keys.values()))
    raise Unauthorized("The JWT header has no kid, and this issuer has several keys.")


def _check_algorithm(alg: Any, key: ClientKey) -> str:
    if alg == "none" or not isinstance(alg, str):
        raise Unauthorized("Unsigned JWTs (alg 'none') are refused.")
    if alg.startswith("HS"):
        raise Unauthorized(f"Symmetric JWT algorithms ({alg}) are refused; sign with ES384 "
                           "or RS384.")
    if alg not in ALGORITHMS:
        raise Unauthorized(f"JWT algorithm {alg} is not accepted ({', '.join(ALGORITHMS)}).")
    raw = key.raw
    if raw.get("alg") not in (None, alg):
        raise Unauthorized(f"The key {raw.get('kid')!r} is registered for {raw.get('alg')}, "
                           f"not {alg}.")
    kty = raw.get("kty")
    if (alg.startswith("ES") and kty != "EC") or (alg.startswith("RS") and kty != "RSA"):
        raise Unauthorized(f"The key {raw.get('kid')!r} ({kty}) cannot verify {alg}.")
    if alg.startswith("ES") and raw.get("crv") != EC_CURVES[alg]:
        raise Unauthorized(f"{alg} needs a {EC_CURVES[alg]} key.")
    return alg


def unverified_claims(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims, unverified: only to find which client's keys to verify with."""
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise Unauthorized("The bearer token is neither an API key nor a readable JWT.") \
            from None
    return header, claims


def verify_jwt(token: str, keys: Mapping[str | None, ClientKey], *, issuer: str,
               audience: str, now: float | None = None, max_age: int | None = MAX_TOKEN_AGE,
               leeway: int = LEEWAY) -> dict[str, Any]:
    """Verify a CDS client's JWT; the claims, or Unauthorized saying what is wrong.

    `now` (seconds since the epoch) is injectable so that fixed examples can be checked.
    """
    header, _ = unverified_claims(token)
    key = _key_for(keys, header)
    alg = _check_algorithm(header.get("alg"), key)
    try:
        claims: dict[str, Any] = jwt.decode(
            token, key.jwk.key, algorithms=[alg], audience=audience, issuer=issuer,
            options={"require": ["iss", "aud", "exp", "iat", "jti"], "verify_exp": False,
                     "verify_iat": False, "verify_nbf": False})
    except jwt.InvalidAudienceError:
        raise Unauthorized(f"The JWT's aud is not this endpoint ({audience}).") from None
    except jwt.InvalidIssuerError:
        raise Unauthorized("The JWT's iss is not the registered issuer.") from None
    except jwt.MissingRequiredClaimError as exc:
        raise Unauthorized(f"The JWT lacks the '{exc.claim}' claim.") from None
    except jwt.InvalidSignatureError:
        raise Unauthorized("The JWT signature does not verify.") from None
    except jwt.PyJWTError as exc:
        raise Unauthorized(f"The JWT is not valid ({type(exc).__name__}).") from None
    now = time.time() if now is None else now
    for claim in ("exp", "iat"):
        if isinstance(claims[claim], bool) or not isinstance(claims[claim], int | float):
            raise Unauthorized(f"The JWT's {claim} is not a number.")
    if claims["exp"] + leeway < now:
        raise Unauthorized("The JWT has expired.")
    if claims["iat"] > now + leeway:
        raise Unauthorized("The JWT is issued in the future.")
    if max_age is not None and now - claims["iat"] > max_age + leeway:
        raise Unauthorized(f"The JWT was issued more than {max_age} seconds ago.")
    nbf = claims.get("nbf")
    if isinstance(nbf, int | float) and not isinstance(nbf, bool) and nbf > now + leeway:
        raise Unauthorized("The JWT is not valid yet (nbf).")
    if not isinstance(claims["jti"], str) or not claims["jti"] or len(claims["jti"]) > 255:
        raise Unauthorized("The JWT's jti must be a string of 1-255 characters.")
    return claims


# --------------------------------------------------------------------------- clients
@dataclass(frozen=True)
class Caller:
    """Who called: a principal for intake and outcomes, and the source its events carry."""

    principal: Principal
    source: str
    client_id: str | None = None  # a CDS client (JWT); None for an API key


def register_client(session: Session, *, iss: str, jwks: Any, organisation: str,
                    actor: str = "cli") -> tuple[CdsClient, bool]:
    """Add or update (key rotation) a client; (row, created). Caller commits."""
    iss = iss.strip()
    if not iss or len(iss) > 255 or not IDENT.match(iss):
        raise JwksError("iss must be 1-255 characters without spaces")
    organisation = organisation.strip().upper() if organisation != ALL_ORGANISATIONS else "*"
    if organisation != ALL_ORGANISATIONS and not ODS.match(organisation):
        raise JwksError("organisation must be an ODS code or '*'")
    parse_jwks(jwks)
    row = session.scalar(select(CdsClient).where(CdsClient.iss == iss))
    created = row is None
    if row is None:
        row = CdsClient(iss=iss, jwks=dict(jwks), organisation=organisation, created_at=utcnow())
        session.add(row)
    else:
        row.jwks, row.organisation = dict(jwks), organisation
    session.flush()
    record(session, actor=actor, entity="cds_client", key=row.id,
           action="created" if created else "updated",
           detail={"iss": iss, "organisation": organisation,
                   "kids": [k.get("kid") for k in jwks["keys"]]})
    return row, created


def list_clients(session: Session) -> list[CdsClient]:
    return list(session.scalars(select(CdsClient).order_by(CdsClient.created_at)))


def remove_client(session: Session, iss: str, *, actor: str = "cli") -> bool:
    row = session.scalar(select(CdsClient).where(CdsClient.iss == iss))
    if row is None:
        return False
    record(session, actor=actor, entity="cds_client", key=row.id, action="removed",
           detail={"iss": iss})
    session.delete(row)
    return True


def _remember_jti(runtime: Runtime, iss: str, claims: Mapping[str, Any]) -> None:
    """Record the jti; a second use of it is a replay. Rows go once the token is dead anyway."""
    dies = min(claims["exp"] + LEEWAY, claims["iat"] + MAX_TOKEN_AGE + 2 * LEEWAY)
    keep_until = datetime.fromtimestamp(max(dies, time.time()), UTC)
    with runtime.db.session() as session:
        session.execute(delete(UsedJti).where(UsedJti.exp < utcnow()))
        session.add(UsedJti(iss=iss, jti=claims["jti"], exp=keep_until))
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            raise Unauthorized("This JWT (its jti) has been used before; replays are "
                               "refused.") from None


def authenticate(runtime: Runtime, token: str, *, audience: str,
                 scopes: Sequence[str]) -> Caller:
    """An API key (with one of `scopes`) or a registered client's JWT for this audience."""
    from mecc.platform import (
        auth,  # Flask-bound helpers; imported late to keep this module testable
    )

    if token.startswith("mecc_"):
        principal = auth.authenticate_request()
        if not any(principal.has_scope(s) for s in scopes):
            raise Forbidden("This API key lacks the " + " or ".join(
                f"'{s}'" for s in scopes) + " scope.")
        return Caller(principal, fhir.slug_source(principal.name))
    _, unverified = unverified_claims(token)
    iss = unverified.get("iss")
    if not isinstance(iss, str) or not iss:
        raise Unauthorized("The JWT has no iss.")
    with runtime.db.session() as session:
        client = session.scalar(select(CdsClient).where(CdsClient.iss == iss))
        if client is None:
            raise Unauthorized("The JWT's iss is not a registered CDS client.")
        client_id, organisation, jwks = client.id, client.organisation, client.jwks
    try:
        keys = parse_jwks(jwks)
    except JwksError:
        log.warning("unusable JWKS registered", extra={"iss": iss})
        raise Unauthorized("The keys registered for this issuer are unusable.") from None
    claims = verify_jwt(token, keys, issuer=iss, audience=audience)
    _remember_jti(runtime, iss, claims)
    principal = Principal(key_id=f"cds:{client_id}", name=iss, organisation=organisation,
                          scopes=frozenset({"events:write", "prompts:write"}))
    return Caller(principal, fhir.slug_source(iss), client_id)


# --------------------------------------------------------------------------- hook requests
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
            "Patient/{{context.patientId}}); this service fetches nothing itself.",
            errors={"prefetch.patient": [f"Patient/{patient_id} is required."]})
    if not any(loc.type == "Encounter" for loc in kept):
        encounter_id = req.context.get("encounterId") or req.hook_instance
        kept.append(fhir.Located({"resourceType": "Encounter", "id": encounter_id},
                                 "context.encounterId", synthetic=True))
    return kept, ignored


def map_hook(req: HookRequest, caller: Caller, svc: CdsService, catalogue: Any,
             now: datetime) -> fhir.MappingResult:
    resources, ignored = hook_resources(req)
    principal = caller.principal
    defaults = fhir.Defaults(
        source=caller.source,
        organisation=None if principal.is_all_organisations else principal.organisation,
        event_id=req.hook_instance,
        occurred_at=now if svc.hook == "patient-view" else None,
        occurred_at_fallback=now,
        staff_reference=req.context.get("userId"))
    result = fhir.map_resources(resources, catalogue=catalogue, defaults=defaults)
    result.ignored[:0] = ignored
    return result


# --------------------------------------------------------------------------- calling a service
_cache_lock = threading.Lock()


def _caches(runtime: Runtime) -> dict[str, Any]:
    caches: dict[str, Any] = runtime.extras.setdefault("caches", {})
    if "rules" not in caches or "services" not in caches:
        from mecc.admin.rule_store import LiveRuleCache
        from mecc.admin.services import ServiceCache

        with _cache_lock:
            caches.setdefault("rules", LiveRuleCache(runtime.catalogue))
            caches.setdefault("services", ServiceCache())
    return caches


@dataclass
class HookAnswer:
    event: Event
    prompts: list[Prompt]
    created: bool


def call_service(runtime: Runtime, caller: Caller, svc: CdsService, body: Any) -> dict[str, Any]:
    """Store the hook call as a contact event, evaluate it now, answer its cards."""
    req = parse_hook_request(body, svc)
    result = map_hook(req, caller, svc, runtime.catalogue, utcnow())
    answer = _store_and_evaluate(runtime, caller, req, result)
    with runtime.db.session() as session:
        cards = build_cards(session, answer.prompts)
    return {"cards": cards}


def _store_and_evaluate(runtime: Runtime, caller: Caller, req: HookRequest,
                        result: fhir.MappingResult) -> HookAnswer:
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
                Event.source == row.source, Event.event_id == row.event_id))
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
    return _evaluate(runtime, row, created)


def _evaluate(runtime: Runtime, row: Event, created: bool) -> HookAnswer:
    """Claim the event and evaluate it here; or, if someone else holds it, wait briefly."""
    caches = _caches(runtime)
    messages: list[dict[str, Any]] = []
    deliveries: list[str] = []
    deadline = time.monotonic() + 3.0
    while True:
        with runtime.db.session() as session:
            token, rows = pipeline.claim(session, [row.id])
            session.commit()
            if rows:
                try:
                    result = pipeline.evaluate_claimed(
                        session, token, rows, ruleset=caches["rules"].get(session),
                        services=caches["services"].get(session), catalogue=runtime.catalogue,
                        max_prompts=runtime.settings.max_prompts_per_contact)
                    session.commit()
                except Exception:
                    session.rollback()
                    _release_quietly(runtime, token)  # the relay hands it to a worker
                    raise
                by_id = {p.id: p for p in result.prompts}
                messages = [push.message_dict(m, prompt_dict(by_id[m.prompt_id]))
                            for m in result.pushed]
                deliveries = webhooks.pending_for_events(
                    session, [r.id for r in rows if r.callback_url and r.id in result.evaluated])
                for _ in result.evaluated:
                    EVALUATION_LATENCY.observe(
                        max(0.0, time.time() - rows[0].received_at.timestamp()))
                for prompt in result.prompts:
                    PROMPTS_CREATED.labels(prompt.topic, prompt.status).inc()
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
    push.announce(runtime, messages)
    webhooks.send_deliver(runtime, deliveries)
    return HookAnswer(row, prompts, created)


def _release_quietly(runtime: Runtime, token: str) -> None:
    try:
        with runtime.db.session() as session:
            pipeline.release(session, token)
            session.commit()
    except Exception:  # noqa: BLE001 - the lease expiry releases it instead
        log.warning("could not release a claimed CDS event; it waits for its lease")


# --------------------------------------------------------------------------- cards
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
         "actions": []}
        for i, s in enumerate(prompt.suggestions or [])]
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


# --------------------------------------------------------------------------- feedback
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


def expected_audience(base_url: str, public_url: str | None, path: str) -> str:
    """The `aud` a client must have used: the URL called, without its query string.

    Behind a proxy that rewrites scheme or host, set MECC_PUBLIC_URL to the public base URL.
    """
    if public_url:
        return public_url.rstrip("/") + path
    return base_url

