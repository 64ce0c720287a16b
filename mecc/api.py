"""The Flask application factory: settings, database, catalogue, API, pages, error mapping."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, request
from flask_smorest import Api
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from mecc import __version__
from mecc.clinical.catalogue import load_catalogue
from mecc.intake.schemas import build_event_schemas
from mecc.platform.broker import Publisher
from mecc.platform.celery_app import celery_init_app
from mecc.platform.db import Database
from mecc.platform.errors import (
    MeccError,
    ProblemSchema,
    ServiceUnavailable,
    from_http_exception,
    from_mecc_error,
    problem,
    register_problem_responses,
)
from mecc.platform.observability import configure_logging, init_request_logging
from mecc.platform.ratelimit import init_rate_limits
from mecc.platform.runtime import Runtime
from mecc.platform.settings import Settings

log = logging.getLogger(__name__)

API_DESCRIPTION = (
    "Making Every Contact Count prompts. Clinical and care systems send contact events; "
    "administrator-owned rules decide which healthy-lifestyle conversation or "
    "self-management / social-prescribing referral fits this person at this contact; the "
    "prompts reach the member of staff in the room."
)


class ProblemApi(Api):  # type: ignore[misc]
    """flask-smorest's Api, answering every HTTP error as RFC 9457 problem+json."""

    ERROR_SCHEMA = ProblemSchema
    DEFAULT_ERROR_RESPONSE_NAME = "Problem"

    def handle_http_exception(self, error: HTTPException) -> Response:
        return from_http_exception(error)

    def _register_responses(self) -> None:
        # Every operation's default error response, documented as the problem+json we send.
        register_problem_responses(self.spec, self.DEFAULT_ERROR_RESPONSE_NAME)


def _flask_config(settings: Settings) -> dict[str, Any]:
    return {
        "SECRET_KEY": settings.secret_key,
        "MAX_CONTENT_LENGTH": settings.max_body_bytes,
        "API_TITLE": "MECC Prompts API",
        "API_VERSION": __version__,
        "OPENAPI_VERSION": "3.1.0",
        "OPENAPI_URL_PREFIX": "/api/v1",
        "OPENAPI_JSON_PATH": "openapi.json",
        "API_SPEC_OPTIONS": {
            "info": {"description": API_DESCRIPTION},
            "components": {"securitySchemes": {"bearerAuth": {
                "type": "http", "scheme": "bearer",
                "description": "An API key created with `mecc keys create`."}}},
        },
        "JSON_SORT_KEYS": False,
    }


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(MeccError)
    def _mecc_error(exc: MeccError) -> Response:
        return from_mecc_error(exc)

    @app.errorhandler(OperationalError)
    @app.errorhandler(PoolTimeout)
    def _database_down(exc: Exception) -> Response:
        log.warning("database unavailable", extra={"error": type(exc).__name__})
        return from_mecc_error(ServiceUnavailable(
            "The database is unavailable; nothing was stored. Retry shortly.", retry_after=5))

    @app.errorhandler(DBAPIError)
    def _database_error(exc: DBAPIError) -> Response:
        if exc.connection_invalidated:
            return _database_down(exc)
        log.exception("database error")
        return problem(500, "Internal Server Error", "An unexpected error occurred.",
                       slug="internal-error")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        if isinstance(exc, HTTPException):
            return from_http_exception(exc)
        if isinstance(exc, RecursionError) and request.is_json:
            # webargs' JSON parsing meets `[[[[...` bodies too; they are the client's error.
            return problem(400, "Bad Request", "The body is nested too deeply to read.",
                           slug="bad-request")
        log.exception("unhandled error")
        return problem(500, "Internal Server Error", "An unexpected error occurred.",
                       slug="internal-error")


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app. `config` overrides Settings fields (tests) — nothing connects here."""
    settings = Settings.from_env()
    if config:
        settings = settings.with_overrides(config)
    configure_logging(settings.log_level)

    app = Flask("mecc")
    app.config.update(_flask_config(settings))
    catalogue = load_catalogue(settings.config_dir)
    event_schema = build_event_schemas(catalogue)
    runtime = Runtime(settings=settings, db=Database(settings.database_url),
                      catalogue=catalogue, event_schema=event_schema,
                      publisher=None)  # type: ignore[arg-type]
    app.extensions["mecc"] = runtime
    runtime.publisher = Publisher(celery_init_app(app))

    api = ProblemApi(app)
    runtime.extras["api"] = api
    _register_blueprints(app, api, runtime)
    _register_error_handlers(app)
    init_request_logging(app)
    init_rate_limits(app, settings)
    return app


def _register_blueprints(app: Flask, api: Api, runtime: Runtime) -> None:
    from mecc.views import admin_pages, backtest, events, ops, prompts, reports, rules, services

    api.register_blueprint(events.build_blueprint(runtime.event_schema))
    api.register_blueprint(prompts.blp)
    api.register_blueprint(rules.blp)
    api.register_blueprint(services.blp)
    api.register_blueprint(reports.blp)
    api.register_blueprint(backtest.blp)
    app.register_blueprint(admin_pages.blp)
    from mecc.views import webhooks as webhook_views
    api.register_blueprint(webhook_views.blp)
    app.register_blueprint(ops.blp)
    from mecc.views import cds as cds_views
    from mecc.views import fhir as fhir_views

    api.register_blueprint(fhir_views.blp)
    app.register_blueprint(cds_views.blp)
    from mecc.views import screen, stream

    stream.register(api)
    screen.register(app)
