"""The security headers on every answer, pages and API alike, set in one after-request hook.

One hook rather than flask-talisman: Talisman's last release is from 2023, it also redirects
to HTTPS and sets session cookie flags (which mecc.people.sessions already owns), and what we
need is a dozen lines that a test can read in full. Pages and the API docs run only scripts and
styles from this origin (no inline script, so no 'unsafe-inline' and no nonces); JSON answers
get a policy that allows nothing at all, as OWASP advises for APIs. No answer may be framed
(`frame-ancestors 'none'`, and X-Frame-Options for browsers that predate it).
"""

from __future__ import annotations

from flask import Flask, Response, request

# Pages (sign-in, rule editor, reports, referrals, the staff screen, the API docs).
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
# Everything else (JSON, problem+json, SSE, metrics, scripts and styles themselves).
API_POLICY = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
HSTS = "max-age=31536000; includeSubDomains"
COMMON = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}


def init_security_headers(app: Flask, *, public_url: str = "") -> None:
    """Add the headers to every response this app sends (errors and 404s included).

    HSTS goes out when the request came over HTTPS, or when MECC_PUBLIC_URL says clients
    reach us over HTTPS through a proxy that terminates TLS (browsers ignore it over HTTP).
    """
    https_behind_proxy = public_url.startswith("https://")

    @app.after_request
    def _security_headers(response: Response) -> Response:
        for name, value in COMMON.items():
            response.headers.setdefault(name, value)
        page = response.mimetype == "text/html"
        response.headers["Content-Security-Policy"] = PAGE_POLICY if page else API_POLICY
        if request.is_secure or https_behind_proxy:
            response.headers.setdefault("Strict-Transport-Security", HSTS)
        return response
