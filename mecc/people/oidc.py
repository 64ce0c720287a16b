"""OpenID Connect sign-in through the organisation's provider (NHS CIS2, Entra ID, Keycloak).

Authlib's Flask client does the protocol: discovery from MECC_OIDC_ISSUER, the authorization
code flow with `state` and `nonce` kept in the session, and the ID token's signature (the
provider's published keys), issuer, audience, expiry and nonce checks. What the verified claims
mean for an account is decided in mecc.people.accounts.
"""

from __future__ import annotations

import logging
from typing import Any

from authlib.integrations.base_client import OAuthError
from authlib.integrations.flask_client import OAuth
from flask import Flask, current_app
from joserfc.errors import JoseError
from requests import RequestException
from werkzeug.wrappers import Response

from mecc.people.accounts import SignInRefused, claim_value
from mecc.platform.settings import Settings

log = logging.getLogger(__name__)
EXTENSION = "mecc.oidc"
SCOPE = "openid email profile"
UNREACHABLE = "The sign-in service could not be reached or did not answer as expected; try " \
              "again, or sign in with a password."
NOT_ACCEPTED = "The sign-in service's answer could not be accepted; please try again."


def init_oidc(app: Flask, settings: Settings) -> None:
    """Register the provider when MECC_OIDC_ISSUER is set (nothing is fetched until the first
    sign-in)."""
    if not settings.oidc_issuer:
        return
    oauth = OAuth(app)
    client = oauth.register(
        "organisation", client_id=settings.oidc_client_id,
        client_secret=settings.oidc_client_secret or None,
        server_metadata_url=settings.oidc_issuer + "/.well-known/openid-configuration",
        client_kwargs={"scope": SCOPE, "default_timeout": 10})
    app.extensions[EXTENSION] = client


def enabled() -> bool:
    return EXTENSION in current_app.extensions


def _client() -> Any:
    return current_app.extensions[EXTENSION]


def begin(redirect_uri: str) -> Response:
    """The redirect to the provider's sign-in page (state and nonce go into the session)."""
    try:
        response: Response = _client().authorize_redirect(redirect_uri)
    except (OAuthError, RequestException, ValueError) as exc:
        log.warning("oidc discovery failed", extra={"error": type(exc).__name__})
        raise SignInRefused(UNREACHABLE) from None
    return response


def finish(issuer: str, role_claim: str) -> dict[str, Any]:
    """The verified claims of the person the provider sent back (from the ID token, completed
    from the userinfo endpoint when the token lacks the email or role claim)."""
    client = _client()
    try:
        token = client.authorize_access_token()
        claims = dict(token.get("userinfo") or {})
        metadata = client.load_server_metadata()
        if not claims or str(metadata.get("issuer", "")).rstrip("/") != issuer:
            raise OAuthError(description="no ID token, or an issuer other than the one set")
        if (claim_value(claims, role_claim) is None or "email" not in claims) \
                and metadata.get("userinfo_endpoint"):
            extra = client.userinfo(token=token)
            if extra.get("sub") == claims.get("sub"):  # OpenID Connect Core 5.3.2
                claims = {**extra, **claims}
    except OAuthError as exc:
        log.warning("oidc sign-in refused", extra={"error": exc.error})
        if exc.error == "access_denied":
            raise SignInRefused("Sign-in was cancelled at the sign-in service.") from None
        raise SignInRefused(NOT_ACCEPTED) from None
    except JoseError as exc:  # signature, issuer, audience, expiry or nonce
        log.warning("oidc id token refused", extra={"error": type(exc).__name__})
        raise SignInRefused(NOT_ACCEPTED) from None
    except (RequestException, ValueError, KeyError) as exc:
        log.warning("oidc sign-in failed", extra={"error": type(exc).__name__})
        raise SignInRefused(UNREACHABLE) from None
    return claims
