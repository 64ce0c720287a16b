"""The bare endpoint for bench/ingest.py: the ceiling of the web layer.

A minimal Flask app served by the same gunicorn configuration as the API
(mecc.platform.gunicorn_conf, same worker count). It reads the request body and answers 202 with
a small JSON object, and does nothing else: no validation, no database, no broker, no logging.

    gunicorn --config python:mecc.platform.gunicorn_conf --workers 2 'bench.bare_app:create_app()'
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Flask, request


def create_app() -> Flask:
    app = Flask("bare")

    @app.post("/api/v1/events")
    @app.post("/api/v1/events/batch")
    def accept() -> Any:
        body = request.get_data()
        return {"id": str(uuid.uuid4()), "status": "queued", "bytes": len(body)}, 202

    @app.get("/healthz")
    def healthz() -> Any:
        return {"status": "ok"}

    return app
