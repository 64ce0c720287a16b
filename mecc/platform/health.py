"""Readiness: can this process reach the database and the broker right now?"""

from __future__ import annotations

from celery import Celery
from sqlalchemy import text

from mecc.platform.db import Database


def database_problem(db: Database) -> str | None:
    """Why the database cannot be used (the exception's name), or None when it answers."""
    try:
        with db.session() as session:
            session.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - readiness reports any failure as "not ready"
        return type(exc).__name__
    return None


def broker_problem(celery: Celery) -> str | None:
    """Why the broker cannot be reached (the exception's name), or None when it answers."""
    try:
        with celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:  # noqa: BLE001 - readiness reports any failure as "not ready"
        return type(exc).__name__
    return None
