"""Administrators' web pages: the rule editor and the outcome dashboard.

Each page is static HTML and JavaScript served only to signed-in people (others get the
sign-in page); it renders no data itself. Its script calls the same JSON API with the session
cookie and a CSRF token, so the person's role (its scopes) and organisation decide what is
shown, exactly as a key's would for any other client.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Blueprint, render_template

from mecc import __version__
from mecc.clinical.directory import SERVICE_TYPES
from mecc.clinical.domain import INDICATORS, KINDS, OUTCOMES, TOPICS
from mecc.platform.runtime import current
from mecc.reports.outcomes import GROUP_BY
from mecc.views.people import page_headers, sign_in_required

blp = Blueprint("admin_pages", __name__)
# Scripts and styles only from our own origin (no inline script), not cached, never framed:
# a page acting with a person's session must not run anything injected into it.
blp.after_request(page_headers)


def example_event(now: datetime | None = None) -> dict[str, Any]:
    """A made-up contact event to dry-run rules against (the CONTRACT.md example, no NHS no.)."""
    moment = (now or datetime.now(UTC)) - timedelta(minutes=5)
    return {
        "event_id": "dry-run-example-1", "source": "rule-editor",
        "occurred_at": moment.replace(microsecond=0).isoformat(),
        "organisation": "Y02345", "setting": "general_practice", "contact_type": "appointment",
        "staff": {"id": "st-991", "role": "practice_nurse", "team": "blue"},
        "person": {"id": "p-example", "birth_date": "1971-04-02", "sex": "female",
                   "ethnicity_group": "south_asian", "postcode_district": "M14"},
        "facts": {"smoking_status": "current", "bmi": 28.4, "audit_c": 6, "phq2": 1},
        "conditions": [{"system": "http://snomed.info/sct", "code": "44054006",
                        "display": "Type 2 diabetes mellitus", "onset_date": "2026-09-30"}],
        "preferences": {"opted_out": False, "declined_topics": []},
    }


def _vocabulary() -> dict[str, Any]:
    facts = current().catalogue.facts
    return {
        "topics": TOPICS, "kinds": KINDS, "indicators": INDICATORS, "outcomes": OUTCOMES,
        "settings": facts["setting"].values or (),
        "staff_roles": facts["staff_role"].values or (),
        "service_types": SERVICE_TYPES, "group_by": GROUP_BY, "version": __version__,
    }


@blp.get("/admin/rules")
@sign_in_required("rules:read")
def admin_rules() -> Any:
    """The rule editor (static page; data comes from the API as the signed-in person)."""
    return render_template("admin_rules.html", example_event=json.dumps(example_event(),
                                                                        indent=2),
                           publish_approval=current().settings.publish_approval,
                           **_vocabulary())


@blp.get("/reports")
@sign_in_required("reports:read")
def reports_page() -> Any:
    """The outcome dashboard (static page; data comes from the API as the signed-in person)."""
    return render_template("reports.html", **_vocabulary())
