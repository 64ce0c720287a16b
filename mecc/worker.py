"""Celery entry point: `celery -A mecc.worker worker` / `celery -A mecc.worker beat`."""

from __future__ import annotations

from mecc import tasks  # noqa: F401  (registers the tasks)
from mecc.api import create_app

flask_app = create_app()
celery = flask_app.extensions["celery"]
