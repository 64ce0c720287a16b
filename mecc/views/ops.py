"""Operations: liveness, readiness, metrics, human API docs. Deliberately open routes."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, render_template
from sqlalchemy import func, select, text

from mecc.platform.auth import open_route
from mecc.platform.observability import QUEUE_DEPTH, metrics_response
from mecc.platform.runtime import current
from mecc.store.models import Event

blp = Blueprint("ops", __name__)


@blp.get("/healthz")
@open_route
def healthz() -> Any:
    """Alive: the process answers."""
    return {"status": "ok"}


def _check_database() -> str | None:
    try:
        with current().db.session() as session:
            session.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - readiness reports any failure as not ready
        return type(exc).__name__
    return None


def _check_broker() -> str | None:
    celery = current_app.extensions["celery"]
    try:
        with celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:  # noqa: BLE001
        return type(exc).__name__
    return None


@blp.get("/readyz")
@open_route
def readyz() -> Any:
    """Ready: the database and the broker are reachable."""
    checks = {"database": _check_database(), "broker": _check_broker()}
    body = {"status": "ok" if not any(checks.values()) else "unavailable",
            "checks": {k: "ok" if v is None else f"failed: {v}" for k, v in checks.items()}}
    if any(checks.values()):
        return body, 503, {"Retry-After": "5"}
    return body


@blp.get("/metrics")
@open_route
def metrics() -> Response:
    """Prometheus metrics."""
    try:
        with current().db.session() as session:
            depth = session.scalar(select(func.count()).select_from(Event).where(
                Event.status.in_(("queued", "processing"))))
        QUEUE_DEPTH.set(depth or 0)
    except Exception:  # noqa: BLE001,S110 - metrics still answer while the database is down
        pass
    return metrics_response()


@blp.get("/api/docs")
@open_route
def api_docs() -> Any:
    """Human-readable API documentation, rendered from the same OpenAPI spec."""
    spec = current_app.extensions["mecc"].extras["api"].spec.to_dict()
    return render_template("api_docs.html", spec=spec)
