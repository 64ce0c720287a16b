"""CDS Hooks 2.0: service definitions, client JWTs, hook calls evaluated in-request, feedback.

- services.py: discovery lists `mecc-encounter-start` and `mecc-patient-view` with their
  prefetch templates.
- jwt.py: the CDS JWT checks. A client authenticates with a JWT signed by a key from the JWK
  Set registered for its `iss` (nothing is ever fetched, `jku` is ignored), or with an API key.
- clients.py: registered clients (`mecc cds-clients add`), and authenticating a call.
- hooks.py: a hook call mapped through mecc.interop.fhir, stored and validated like any
  contact event, evaluated in the request by the one evaluation service, answered with cards.
- cards.py: one card per shown prompt.  feedback.py: feedback recorded as prompt outcomes.

`from mecc.interop import cds` gives the names the views, the CLI and the tests use.
"""

from __future__ import annotations

from mecc.interop.cds.cards import (
    OVERRIDE_REASON_SYSTEM,
    OVERRIDE_REASONS,
    TOPIC_SYSTEM,
    build_cards,
    card_for,
    fit_summary,
    suggestion_uuid,
)
from mecc.interop.cds.clients import (
    Caller,
    authenticate,
    expected_audience,
    list_clients,
    register_client,
    remove_client,
)
from mecc.interop.cds.feedback import Feedback, outcome_for, parse_feedback, record_feedback
from mecc.interop.cds.hooks import (
    HookAnswer,
    HookRequest,
    PreconditionFailed,
    call_service,
    hook_resources,
    map_hook,
    parse_hook_request,
)
from mecc.interop.cds.jwt import ClientKey, JwksError, parse_jwks, unverified_claims, verify_jwt
from mecc.interop.cds.services import SERVICES, CdsService, discovery, service

__all__ = [
    "OVERRIDE_REASONS", "OVERRIDE_REASON_SYSTEM", "SERVICES", "TOPIC_SYSTEM", "Caller",
    "CdsService", "ClientKey", "Feedback", "HookAnswer", "HookRequest", "JwksError",
    "PreconditionFailed", "authenticate", "build_cards", "call_service", "card_for",
    "discovery", "expected_audience", "fit_summary", "hook_resources", "list_clients",
    "map_hook", "outcome_for", "parse_feedback", "parse_hook_request", "parse_jwks",
    "record_feedback", "register_client", "remove_client", "service", "suggestion_uuid",
    "unverified_claims", "verify_jwt",
]
