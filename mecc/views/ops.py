"""Operations: liveness, readiness, metrics, the API reference. Deliberately open routes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import flask_swagger_ui
from flask import Blueprint, Response, current_app, render_template, send_from_directory

from mecc import __version__
from mecc.intake.read import waiting_event_count
from mecc.platform import health
from mecc.platform.errors import NotFound
from mecc.platform.observability import QUEUE_DEPTH, metrics_response
from mecc.platform.runtime import current
from mecc.reports import fatigue
from mecc.views.auth import open_route

blp = Blueprint("ops", __name__)


@blp.get("/healthz")
@open_route
def healthz() -> Any:
    """Alive: the process answers."""
    return {"status": "ok"}


@blp.get("/readyz")
@open_route
def readyz() -> Any:
    """Ready: the database and the broker are reachable."""
    checks = {"database": health.database_problem(current().db),
              "broker": health.broker_problem(current_app.extensions["celery"])}
    body = {"status": "ok" if not any(checks.values()) else "unavailable",
            "checks": {k: "ok" if v is None else f"failed: {v}" for k, v in checks.items()}}
    if any(checks.values()):
        return body, 503, {"Retry-After": "5"}
    return body


@blp.get("/metrics")
@open_route
def metrics() -> Response:
    """Prometheus metrics."""
    depth = waiting_event_count(current().db)
    if depth is not None:  # unknown while the database is down: the gauge keeps its last value
        QUEUE_DEPTH.set(depth)
    fatigue.refresh_gauges(current())  # at most every few minutes; keeps a scrape cheap
    return metrics_response()


# Swagger UI's files, from the flask-swagger-ui wheel (pinned in pyproject.toml): served by
# this app, so the reference works with no CDN and the page's policy allows only our origin.
SWAGGER_UI = Path(flask_swagger_ui.__file__).parent / "dist"
SWAGGER_UI_FILES = frozenset({"swagger-ui-bundle.js", "swagger-ui.css"})
ASSETS = "/api/docs/assets"


@blp.get("/api/docs")
@open_route
def api_docs() -> Any:
    """The API reference: Swagger UI over the served OpenAPI document, "try it" with a key."""
    return render_template("api_docs.html", title=current_app.config["API_TITLE"],
                           version=__version__, assets=ASSETS,
                           spec_url="/api/v1/openapi.json")


@blp.get(f"{ASSETS}/<string:name>")
@open_route
def api_docs_asset(name: str) -> Response:
    """Swagger UI's script and style sheet (only those two files)."""
    if name not in SWAGGER_UI_FILES:
        raise NotFound(f"No file '{name}'.")
    return send_from_directory(SWAGGER_UI, name, max_age=86_400)
