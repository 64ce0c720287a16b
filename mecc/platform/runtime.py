"""What one process holds once: settings, database, catalogue, schemas, the broker publisher,
and the caches and connections built once per process. Built by mecc.api.create_app."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import marshmallow as ma
from flask import current_app

from mecc.clinical.catalogue import Catalogue
from mecc.platform.db import Database
from mecc.platform.settings import Settings

if TYPE_CHECKING:
    # Types only: these are built by create_app, which may import every layer.
    import redis
    from flask_smorest import Api

    from mecc.admin.rule_store import LiveRuleCache
    from mecc.admin.services import ServiceCache
    from mecc.delivery.hub import Hub
    from mecc.platform.broker import Publisher


@dataclass
class Runtime:
    settings: Settings
    db: Database
    catalogue: Catalogue
    event_schema: type[ma.Schema]  # the class, for the OpenAPI description
    # One loaded instance reused for every event: building a schema deep-copies its fields,
    # which was about 40% of the time spent on a batch (bench/ingest.py).
    event_loader: ma.Schema
    publisher: Publisher
    api: Api
    rule_cache: LiveRuleCache  # the live rules, for the evaluation service
    service_cache: ServiceCache  # the services directory, for the evaluation service
    # Expressions compiled for dry runs and back-tests, kept apart from the live cache.
    dry_run_rules: LiveRuleCache
    backtest_rules: LiveRuleCache
    redis: redis.Redis  # announcing push messages
    push_hub: Hub  # one pub/sub subscriber per API process, started on the first stream


def current() -> Runtime:
    runtime: Runtime = current_app.extensions["mecc"]
    return runtime
