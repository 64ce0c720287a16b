"""What the OpenAPI document says beyond each view's own decorators, kept in one place.

- The error answers every operation can give, by what it takes: a key (401, 403, 429), a path
  parameter (404), a query (422), a body (400, 413, 415, 422), the database (503). Each is the
  problem+json that mecc.views.problems sends, so the spec and the server cannot drift apart
  one view at a time.
- The path parameter types (rule keys, service ids) whose patterns the URL map also enforces.
- Explicit links between operations (what a 201 or a list gives, and which call takes it), so a
  client generator, the docs and schemathesis' stateful phase can chain calls.
"""

from __future__ import annotations

from typing import Any

from apispec import BasePlugin
from flask_smorest import Api
from werkzeug.routing import BaseConverter

from mecc.platform.fields import StrictString
from mecc.views.problems import PROBLEM_JSON

# Rule keys as the rule pack allows them (mecc.clinical.rulepack), minus the two words that
# are operations of their own under /rules/ (POST /rules/validate, POST /rules/dry-run):
# GET /rules/validate must be a 405 naming POST, not a lookup of a rule called "validate".
RESERVED_RULE_KEYS = ("validate", "dry-run")
RULE_KEY_PATTERN = r"^(?!(validate|dry-run)$)[a-z0-9][a-z0-9-]{1,62}$"
SERVICE_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{1,79}$"
MAX_VERSION = 1_000_000  # the rule pack's bound on a version number


class RuleKeyConverter(BaseConverter):
    regex = r"(?!(?:validate|dry-run)(?![a-z0-9-]))[a-z0-9][a-z0-9-]{1,62}"


class ServiceIdConverter(BaseConverter):
    regex = r"[a-z0-9][a-z0-9-]{1,79}"


# A string with at least one character that Python's str.strip() keeps (StrictString and the
# rule and service parsers refuse blank text): every character but Python's whitespace,
# spelled out because ECMA's \s (what JSON Schema patterns use) is a different set.
PY_SPACE = (r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f"
            r"\u205f\u3000")
NOT_BLANK = f"[^{PY_SPACE}]"


def _not_blank(_converter: Any, field: Any, ret: dict[str, Any], **_: Any) -> dict[str, Any]:
    if isinstance(field, StrictString) and "pattern" not in ret:
        return {"pattern": NOT_BLANK}
    return {}


def extend_spec(app: Any, api: Api) -> None:
    """URL converters (`<rule_key:key>`, `<service_id:service_id>`), documented with their
    patterns: a path that does not match is a 404 before any view or database is reached.
    And StrictString (trimmed, never blank) documented as such."""
    api.ma_plugin.converter.add_attribute_function(_not_blank)
    app.url_map.converters["rule_key"] = RuleKeyConverter
    app.url_map.converters["service_id"] = ServiceIdConverter
    api.register_converter(RuleKeyConverter, lambda _c: {
        "type": "string", "pattern": RULE_KEY_PATTERN, "example": "smoking-brief-advice"})
    api.register_converter(ServiceIdConverter, lambda _c: {
        "type": "string", "pattern": SERVICE_ID_PATTERN, "example": "stop-smoking-manchester"})


# Component names are HTTPStatus names (mecc.views.problems.register_problem_responses).
_BY_STATUS = {400: "BAD_REQUEST", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND",
              413: "REQUEST_ENTITY_TOO_LARGE", 415: "UNSUPPORTED_MEDIA_TYPE",
              422: "UNPROCESSABLE_ENTITY", 429: "TOO_MANY_REQUESTS",
              503: "SERVICE_UNAVAILABLE"}


# gunicorn answers a request line over its limit (8 KiB) itself, before the app: as HTML.
URI_TOO_LONG = {"description": "The request line (path and query) is longer than the HTTP "
                               "server reads; answered by gunicorn, not the app.",
                "content": {"text/html": {"schema": {"type": "string"}}}}


def _expected_errors(path: str, operation: dict[str, Any]) -> set[int]:
    statuses = {503}
    if operation.get("security"):
        statuses |= {401, 403, 429}
    if "{" in path:
        statuses.add(404)
    if any(isinstance(p, dict) and p.get("in") == "query"
           for p in operation.get("parameters", [])):
        statuses.add(422)
    if "requestBody" in operation:
        statuses |= {400, 413, 415, 422}
    return statuses


# The operations whose service raises Conflict (409), and why.
CONFLICTS = {
    ("/api/v1/rules", "post"): "A rule with this key exists (PUT to change it).",
    ("/api/v1/services", "post"): "A service with this id exists (PUT to change it).",
    ("/api/v1/referrals/{referral_id}/status", "post"):
        "The referral's current status does not allow this step.",
}

# (path, method, status) -> {link name: (operationId, parameters or requestBody)}.
# The operation ids are flask-smorest's: "<blueprint>_<view>" with the view's name.
_R = "$response.body#"
LINKS: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {
    ("/api/v1/events", "post", "202"): {
        "GetEvent": {"operationId": "events_get_event",
                     "parameters": {"event_uuid": f"{_R}/id"}},
        "ListItsPrompts": {"operationId": "prompts_list_prompts",
                           "parameters": {"event": f"{_R}/id"}},
    },
    ("/api/v1/rules", "post", "201"): {
        "GetRule": {"operationId": "rules_get_rule", "parameters": {"key": f"{_R}/key"}},
        "UpdateRule": {"operationId": "rules_update_rule", "parameters": {"key": f"{_R}/key"}},
        "PublishRule": {"operationId": "rules_publish_rule",
                        "parameters": {"key": f"{_R}/key"},
                        "requestBody": {"version": f"{_R}/version"}},
        "RuleVersions": {"operationId": "rules_rule_versions",
                         "parameters": {"key": f"{_R}/key"}},
        "DiffRule": {"operationId": "rules_diff_versions",
                     "parameters": {"key": f"{_R}/key", "to": f"{_R}/version"}},
        "BacktestRule": {"operationId": "backtests_start_backtest",
                         "parameters": {"key": f"{_R}/key"}},
        "RetireRule": {"operationId": "rules_retire_rule", "parameters": {"key": f"{_R}/key"}},
    },
    ("/api/v1/rules/{key}", "put", "200"): {
        "PublishVersion": {"operationId": "rules_publish_rule",
                           "parameters": {"key": f"{_R}/key"},
                           "requestBody": {"version": f"{_R}/version"}},
    },
    ("/api/v1/rules/{key}/publish", "post", "202"): {
        "ApproveIt": {"operationId": "rules_approve_version",
                      "parameters": {"key": f"{_R}/rule/key", "version": f"{_R}/rule/version"}},
        "RejectIt": {"operationId": "rules_reject_version",
                     "parameters": {"key": f"{_R}/rule/key", "version": f"{_R}/rule/version"}},
    },
    ("/api/v1/rules", "get", "200"): {
        "GetFirstRule": {"operationId": "rules_get_rule",
                         "parameters": {"key": f"{_R}/items/0/key"}},
    },
    ("/api/v1/rules/{key}/backtest", "post", "202"): {
        "PollBacktest": {"operationId": "backtests_get_backtest",
                         "parameters": {"backtest_id": f"{_R}/id"}},
    },
    ("/api/v1/services", "post", "201"): {
        "GetService": {"operationId": "services_get_service",
                       "parameters": {"service_id": f"{_R}/id"}},
        "ReplaceService": {"operationId": "services_update_service",
                           "parameters": {"service_id": f"{_R}/id"}},
        "DeleteService": {"operationId": "services_delete_service",
                          "parameters": {"service_id": f"{_R}/id"}},
    },
    ("/api/v1/services", "get", "200"): {
        "GetFirstService": {"operationId": "services_get_service",
                            "parameters": {"service_id": f"{_R}/items/0/id"}},
    },
    ("/api/v1/prompts", "get", "200"): {
        "GetFirstPrompt": {"operationId": "prompts_get_prompt",
                           "parameters": {"prompt_id": f"{_R}/items/0/id"}},
        "RecordOutcome": {"operationId": "prompts_post_outcome",
                          "parameters": {"prompt_id": f"{_R}/items/0/id"}},
    },
    ("/api/v1/referrals", "get", "200"): {
        "GetFirstReferral": {"operationId": "referrals_get_referral",
                             "parameters": {"referral_id": f"{_R}/items/0/id"}},
        "MoveReferral": {"operationId": "referrals_post_status",
                         "parameters": {"referral_id": f"{_R}/items/0/id"}},
        "ReferralAsFhir": {"operationId": "referrals_get_referral_fhir",
                           "parameters": {"referral_id": f"{_R}/items/0/id"}},
        "RecordPersonalOutcomes": {"operationId": "referrals_post_personal_outcomes",
                                   "parameters": {"referral_id": f"{_R}/items/0/id"}},
    },
    ("/api/v1/webhook-deliveries", "get", "200"): {
        "RetryFirst": {"operationId": "webhook_deliveries_retry_delivery",
                       "parameters": {"delivery_id": f"{_R}/items/0/id"}},
    },
}


# Whole-body examples for the reference's "try it" (bodies whose fields carry no examples).
_EVENT = {
    "event_id": "emis-2026-11-22-000123", "source": "emis-web",
    "occurred_at": "2026-11-22T09:30:00+00:00", "organisation": "Y02345",
    "setting": "general_practice", "contact_type": "appointment",
    "staff": {"id": "st-991", "role": "practice_nurse", "team": "blue"},
    "person": {"id": "p-7f3a1c", "birth_date": "1971-04-02", "sex": "female"},
    "facts": {"smoking_status": "current", "bmi": 28.4}}
REQUEST_EXAMPLES: dict[str, Any] = {
    "events_post_batch": {"events": [_EVENT]},
    "prompts_post_outcome": {"outcome": "referred", "staff_id": "st-991",
                             "service_id": "stop-smoking-manchester",
                             "note": "Booked for Tuesday."},
    "rules_validate_rule": {"when": "smoking_status == 'current' && age >= 18"},
    "rules_publish_rule": {"version": 2},
    "rules_reject_version": {"reason": "The threshold should follow NICE NG246."},
    "referrals_post_status": {"status": "accepted", "note": "First session on Monday."},
    "referrals_post_personal_outcomes": {"recorded_at": "2026-11-22T09:30:00+00:00",
                                         "scores": {"better_able_to_manage": 4,
                                                    "hope_for_future": 3}},
    "backtests_start_backtest": {"days": 30},
    "fhir_post_bundle": {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p1", "birthDate": "1971-04-02",
                      "gender": "female", "identifier": [{
                          "system": "https://fhir.nhs.uk/Id/nhs-number",
                          "value": "9434765919"}]}},
        {"resource": {"resourceType": "Encounter", "id": "e1", "status": "finished",
                      "class": {"code": "AMB"}, "subject": {"reference": "Patient/p1"},
                      "period": {"start": "2026-11-22T09:30:00+00:00"},
                      "serviceProvider": {"identifier": {
                          "system": "https://fhir.nhs.uk/Id/ods-organization-code",
                          "value": "Y02345"}}}},
        {"resource": {"resourceType": "Observation", "id": "o1", "status": "final",
                      "code": {"coding": [{"system": "http://loinc.org", "code": "39156-5"}]},
                      "subject": {"reference": "Patient/p1"},
                      "effectiveDateTime": "2026-11-22T09:00:00+00:00",
                      "valueQuantity": {"value": 28.4, "unit": "kg/m2"}}}]},
}


class StandardResponses(BasePlugin):
    """apispec plugin: the shared error answers and the links, added as each path registers."""

    def operation_helper(self, path: str | None = None,
                         operations: dict[str, Any] | None = None, **kwargs: Any) -> None:
        rule = kwargs.get("rule")
        for method, operation in (operations or {}).items():
            if not isinstance(operation, dict):
                continue
            if rule is not None:  # one view function per method: "<blueprint>_<view>"
                operation.setdefault("operationId", rule.endpoint.replace(".", "_"))
            responses = operation.setdefault("responses", {})
            # flask-smorest keys responses by int, apispec by str: either may be here.
            present = {str(code) for code in responses}
            for status in sorted(_expected_errors(path or "", operation)):
                if str(status) not in present:
                    responses[str(status)] = _BY_STATUS[status]
            if "414" not in present:
                responses["414"] = URI_TOO_LONG
            conflict = CONFLICTS.get((path or "", method))
            if conflict is not None and "409" not in present:
                responses["409"] = {
                    "description": conflict,
                    "content": {PROBLEM_JSON: {"schema": "Problem"}}}
            example = REQUEST_EXAMPLES.get(operation.get("operationId", ""))
            for media in operation.get("requestBody", {}).get("content", {}).values():
                if example is not None and isinstance(media, dict):
                    media.setdefault("example", example)
            for (link_path, link_method, link_status), links in LINKS.items():
                if link_path != path or link_method != method:
                    continue
                response = responses.get(link_status, responses.get(int(link_status)))
                if isinstance(response, dict):
                    response.setdefault("links", {}).update(links)
