"""Structured JSON logs with a request id, and Prometheus metrics.

structlog renders every log record (ours and libraries') as one JSON line. Nothing here logs
request bodies, facts, names or NHS numbers: log calls pass ids, counts and reasons only.
Exceptions are the exception to that care: a database error's text quotes the values it was
given (PostgreSQL's "Failing row contains (...)", SQLAlchemy's "[parameters: ...]"), and
libraries such as Celery log that text. So the pipeline formats tracebacks itself, with a
database error's message withheld (its class and SQLSTATE kept), removes that message
wherever a log line repeats it, and blanks anything shaped like a valid NHS number.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
import traceback
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
# Methods an HTTP client may send us; any other is counted as "other", so an invented method
# cannot add a series to /metrics per request.
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_DRIVER_MODULES = ("sqlalchemy", "psycopg", "psycopg2", "sqlite3")
_NHS_NUMBER_SHAPE = re.compile(r"(?<!\d)(\d{3})[ -]?(\d{3})[ -]?(\d{4})(?!\d)")


def _is_database_error(exc: BaseException) -> bool:
    return type(exc).__module__.split(".")[0] in _DRIVER_MODULES


def _valid_nhs_number(digits: str) -> bool:
    total = sum(int(d) * w for d, w in zip(digits[:9], range(10, 1, -1), strict=True))
    check = 11 - total % 11
    return (0 if check == 11 else check) == int(digits[9]) and check != 10


def _blank_nhs_numbers(text: str) -> str:
    return _NHS_NUMBER_SHAPE.sub(
        lambda m: "[nhs-number]" if _valid_nhs_number("".join(m.groups())) else m.group(0),
        text)


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and what caused it, outermost last (as Python prints them)."""
    found: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not e for e in found):
        found.append(current)
        current = current.__cause__ or (None if current.__suppress_context__
                                        else current.__context__)
    return list(reversed(found))


def _safe_message(exc: BaseException) -> str:
    if not _is_database_error(exc):
        return _blank_nhs_numbers(str(exc))
    code = getattr(exc, "sqlstate", None) or getattr(getattr(exc, "orig", None), "sqlstate",
                                                     None)
    statement = getattr(exc, "statement", None)  # placeholders only: parameters are hidden
    said = f"[database error text withheld{f'; SQLSTATE {code}' if code else ''}]"
    return f"{said} [SQL: {statement[:500]}]" if isinstance(statement, str) else said


def safe_exception_text(exc: BaseException) -> str:
    """A traceback as Python prints it, with each database error's message withheld."""
    parts = []
    for item in _chain(exc):
        frames = "".join(traceback.format_tb(item.__traceback__))
        parts.append(f"Traceback (most recent call last):\n{frames}"
                     f"{type(item).__module__}.{type(item).__qualname__}: {_safe_message(item)}")
    return "\n\nDuring handling, or because of it:\n\n".join(parts)


def _exc_info(value: Any) -> BaseException | None:
    if value is True:
        value = sys.exc_info()
    if isinstance(value, BaseException):
        return value
    if isinstance(value, tuple) and len(value) == 3 and isinstance(value[1], BaseException):
        return value[1]
    return None


def _scrub(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """Tracebacks without database values; a message that quotes one (Celery's "raised
    unexpected: ...") without it; NHS numbers blanked in every text field."""
    exc = _exc_info(event_dict.pop("exc_info", None))
    quoted: list[str] = []
    if exc is not None:
        event_dict["exception"] = safe_exception_text(exc)
        quoted = [text for e in _chain(exc) if _is_database_error(e)
                  for text in (repr(e), str(e)) if text]
    for key, value in list(event_dict.items()):
        if isinstance(value, str) and key != "exception":
            for text in quoted:
                value = value.replace(text, "[database error text withheld]")
            event_dict[key] = _blank_nhs_numbers(value)
    return event_dict


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
                    _scrub,
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
        method = request.method if request.method in HTTP_METHODS else "other"
        REQUEST_LATENCY.labels(method, endpoint, str(response.status_code)).observe(elapsed)
        response.headers["X-Request-ID"] = g.get("request_id", "")
        if endpoint not in ("/metrics", "/healthz") and not endpoint.startswith(
                "/api/v1/stream"):
            log.info("request", method=method, path=endpoint,
                     status=response.status_code, ms=round(elapsed * 1000, 1),
                     key_id=getattr(g.get("principal"), "key_id", None))
        return response
