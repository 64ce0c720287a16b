"""The Flask application factory: settings, database, catalogue, API, pages, error mapping."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask
from flask_limiter import Limiter
from flask_smorest import Api

from mecc import __version__
from mecc.admin.rule_store import LiveRuleCache
from mecc.admin.services import ServiceCache
from mecc.clinical.catalogue import load_catalogue
from mecc.delivery import push
from mecc.delivery.hub import Hub
from mecc.intake.schemas import build_event_schemas
from mecc.platform.broker import Publisher
from mecc.platform.celery_app import celery_init_app
from mecc.platform.db import Database
from mecc.platform.observability import configure_logging, init_request_logging
from mecc.platform.ratelimit import init_rate_limits
from mecc.platform.runtime import Runtime
from mecc.platform.settings import Settings
from mecc.views import check_request_values
from mecc.views.bodies import register_body_schemas
from mecc.views.headers import init_security_headers
from mecc.views.openapi import StandardResponses, extend_spec
from mecc.views.problems import ProblemApi, register_error_handlers

log = logging.getLogger(__name__)

API_DESCRIPTION = (
    "Making Every Contact Count prompts. Clinical and care systems send contact events; "
    "administrator-owned rules decide which healthy-lifestyle conversation or "
    "self-management / social-prescribing referral fits this person at this contact; the "
    "prompts reach the member of staff in the room. No string anywhere may contain U+0000 "
    "(NUL) or a lone surrogate: such a request is a 422 naming the field."
)


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


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app. `config` overrides Settings fields (tests) — nothing connects here."""
    settings = Settings.from_env()
    if config:
        settings = settings.with_overrides(config)
    configure_logging(settings.log_level)

    app = Flask("mecc")
    app.config.update(_flask_config(settings))
    api = ProblemApi(app, spec_kwargs={"extra_plugins": [StandardResponses()]})
    extend_spec(app, api)
    runtime = _build_runtime(app, api, settings)
    app.extensions["mecc"] = runtime
    _register_blueprints(app, api, runtime)
    register_body_schemas(api.spec, runtime.catalogue)
    register_error_handlers(app)
    init_security_headers(app, public_url=settings.public_url)
    init_request_logging(app)
    limiter = init_rate_limits(app, settings)
    check_request_values(app)
    _register_people(app, settings, limiter)
    return app


def _register_people(app: Flask, settings: Settings, limiter: Limiter) -> None:
    """Signed-in sessions and CSRF for the pages, OpenID Connect, and the sign-in pages."""
    from mecc.people.oidc import init_oidc
    from mecc.people.sessions import init_sessions
    from mecc.views import people

    init_sessions(app)
    init_oidc(app, settings)
    people.register(app, limiter)


def _build_runtime(app: Flask, api: Api, settings: Settings) -> Runtime:
    """What the process holds once; nothing here connects (connections open on first use)."""
    catalogue = load_catalogue(settings.config_dir)
    event_schema = build_event_schemas(catalogue)
    return Runtime(
        settings=settings, db=Database(settings.database_url), catalogue=catalogue,
        event_schema=event_schema, event_loader=event_schema(),
        publisher=Publisher(celery_init_app(app, settings)), api=api,
        rule_cache=LiveRuleCache(catalogue), service_cache=ServiceCache(),
        dry_run_rules=LiveRuleCache(catalogue), backtest_rules=LiveRuleCache(catalogue),
        redis=push.connect(settings.redis_url), push_hub=Hub(settings.redis_url))


def _register_blueprints(app: Flask, api: Api, runtime: Runtime) -> None:
    from mecc.views import admin_pages, backtest, events, ops, prompts, reports, rules, services

    api.register_blueprint(events.build_blueprint(runtime.event_schema))
    api.register_blueprint(prompts.blp)
    api.register_blueprint(rules.blp)
    api.register_blueprint(services.blp)
    api.register_blueprint(reports.blp)
    from mecc.views import referral_page
    from mecc.views import referrals as referral_views
    api.register_blueprint(referral_views.blp)
    app.register_blueprint(referral_page.blp)
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
