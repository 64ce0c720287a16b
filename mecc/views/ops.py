"""Operations: liveness, readiness, metrics, human API docs. Deliberately open routes."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, render_template

from mecc.intake.read import waiting_event_count
from mecc.platform import health
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


@blp.get("/api/docs")
@open_route
def api_docs() -> Any:
    """Human-readable API documentation, rendered from the same OpenAPI spec."""
    spec = current_app.extensions["mecc"].api.spec.to_dict()
    return render_template("api_docs.html", spec=spec)
