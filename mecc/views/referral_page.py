"""The referral follow-up page (/referrals): a link worker, or the person's practitioner,
moves referrals along and records the person's own outcomes.

Static HTML and JavaScript served only to signed-in people; its script calls the referrals
API with the session cookie and CSRF token, so the person's role and organisation decide what
is shown and what may be changed, as a key's would.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template

from mecc import __version__
from mecc.referrals.fhir import STATEMENTS
from mecc.referrals.lifecycle import STATUSES
from mecc.views.people import page_headers, sign_in_required

blp = Blueprint("referral_page", __name__)
# As for every page acting with a person's session: own scripts only, not cached, never framed.
blp.after_request(page_headers)


@blp.get("/referrals")
@sign_in_required("prompts:read")
def referrals_page() -> Any:
    """Referrals to follow up (static page; data comes from the API as the signed-in person)."""
    return render_template("referrals.html", statuses=STATUSES, statements=STATEMENTS,
                           version=__version__)
