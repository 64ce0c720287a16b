"""Structured JSON logs with a request id, and Prometheus metrics.

structlog renders every log record (ours and libraries') as one JSON line. Nothing here logs
request bodies, facts, names or NHS numbers: log calls pass ids, counts and reasons only.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import uuid
from collections.abc import MutableMapping
from typing import Any

import structlog
from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prom_multiprocess

EVENTS_ACCEPTED = Counter("mecc_events_accepted_total", "Contact events accepted", ["channel"])
EVENTS_REJECTED = Counter("mecc_events_rejected_total", "Contact events rejected", ["reason"])
EVENTS_DUPLICATE = Counter("mecc_events_duplicate_total", "Duplicate submissions answered")
REQUEST_LATENCY = Histogram(
    "mecc_request_seconds", "HTTP request latency", ["method", "endpoint", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
EVALUATION_LATENCY = Histogram(
    "mecc_evaluation_seconds", "Seconds from event accepted to prompts stored",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
PROMPTS_CREATED = Counter("mecc_prompts_created_total", "Prompts created", ["topic", "status"])
QUEUE_DEPTH = Gauge("mecc_queue_depth", "Events waiting for evaluation",
                    multiprocess_mode="livemax")
WEBHOOK_FAILURES = Counter("mecc_webhook_failures_total", "Failed webhook attempts", ["reason"])

# Fields that may carry health data never reach a log line, whatever a caller passes.
_FORBIDDEN = frozenset({"facts", "nhs_number", "person", "body", "payload", "conditions", "note",
                        "display", "person_display"})


EventDict = MutableMapping[str, Any]


def _drop_health_data(_: Any, __: str, event_dict: EventDict) -> EventDict:
    for key in _FORBIDDEN & event_dict.keys():
        event_dict[key] = "[redacted]"
    return event_dict


def _request_id(_: Any, __: str, event_dict: EventDict) -> EventDict:
    try:
        rid = g.get("request_id")
    except RuntimeError:  # outside a request: worker, CLI
        rid = None
    if rid and "request_id" not in event_dict:
        event_dict["request_id"] = rid
    return event_dict


def configure_logging(level: str = "INFO") -> None:
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _request_id,
        _drop_health_data,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    structlog.processors.JSONRenderer()],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # werkzeug's access log repeats ours; gunicorn's is configured separately.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)


def metrics_response() -> Response:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        prom_multiprocess.MultiProcessCollector(registry)
        data = generate_latest(registry)
    else:
        data = generate_latest()
    return Response(data, content_type=CONTENT_TYPE_LATEST)  # it carries its own charset


def init_request_logging(app: Flask) -> None:
    log = structlog.get_logger("mecc.http")

    @app.before_request
    def _start() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if 0 < len(incoming) <= 64 and incoming.isprintable() \
            else uuid.uuid4().hex
        g.started = time.perf_counter()

    @app.after_request
    def _finish(response: Response) -> Response:
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        REQUEST_LATENCY.labels(request.method, endpoint, str(response.status_code)).observe(
            elapsed)
        response.headers["X-Request-ID"] = g.get("request_id", "")
        if endpoint not in ("/metrics", "/healthz") and not endpoint.startswith(
                "/api/v1/stream"):
            log.info("request", method=request.method, path=endpoint,
                     status=response.status_code, ms=round(elapsed * 1000, 1),
                     key_id=getattr(g.get("principal"), "key_id", None))
        return response
