"""Operations: liveness, readiness, Prometheus metrics, the OpenAPI spec and the human docs."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from mecc.api import create_app
from mecc.clinical.catalogue import load_catalogue
from mecc.store.models import Event
from tests.support.factories import auth_header, make_event
from tests.support.stack import TEST_REDIS_URL

ROOT = Path(__file__).resolve().parents[2]
DEAD_BROKER = "redis://127.0.0.1:1/0"
DEAD_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:1/mecc"
PROBLEM_JSON = "application/problem+json"
EVENT_PATHS = {"/api/v1/events": "post", "/api/v1/events/batch": "post",
               "/api/v1/events/{event_uuid}": "get"}


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    made: list[Any] = []

    def factory(database_url: str, redis_url: str = TEST_REDIS_URL) -> Any:
        made.append(create_app({"database_url": database_url, "redis_url": redis_url,
                                "var_dir": str(tmp_path), "secret_key": "test-secret-key",
                                "pseudonym_key": "test-pseudonym-key"}))
        return made[-1]

    yield factory
    for application in made:
        application.extensions["mecc"].db.dispose()


# ------------------------------------------------------------------------------ health
def test_healthz_is_alive(client: Any) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_healthz_is_alive_even_with_the_database_down(make_app: Any) -> None:
    assert make_app(DEAD_DATABASE).test_client().get("/healthz").status_code == 200


def test_readyz_is_ready_with_database_and_broker_up(client: Any, redis_url: str) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"status": "ok",
                                   "checks": {"database": "ok", "broker": "ok"}}


def test_readyz_is_503_with_the_broker_down(database_url: str, make_app: Any) -> None:
    response = make_app(database_url, redis_url=DEAD_BROKER).test_client().get("/readyz")
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    body = response.get_json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["broker"].startswith("failed")


def test_readyz_is_503_with_the_database_down(make_app: Any, redis_url: str) -> None:
    response = make_app(DEAD_DATABASE).test_client().get("/readyz")
    assert response.status_code == 503
    assert "Retry-After" in response.headers
    body = response.get_json()
    assert body["checks"]["database"].startswith("failed")
    assert body["checks"]["broker"] == "ok"


# ------------------------------------------------------------------------------ metrics
def scrape(client: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert response.headers["Content-Type"].count("charset") == 1
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.get_data(as_text=True))
            for s in family.samples}


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_name_what_the_contract_promises(client: Any) -> None:
    text = client.get("/metrics").get_data(as_text=True)
    for name in ("mecc_events_accepted_total", "mecc_events_rejected_total",
                 "mecc_events_duplicate_total", "mecc_evaluation_seconds",
                 "mecc_prompts_created_total", "mecc_queue_depth",
                 "mecc_webhook_failures_total", "mecc_request_seconds"):
        assert f"# TYPE {name} " in text, name


def test_metrics_answer_with_the_database_down(make_app: Any) -> None:
    """The queue depth is unknown then, but the page is how an operator sees the outage."""
    samples = scrape(make_app(DEAD_DATABASE).test_client())
    assert ("mecc_queue_depth", ()) in samples


def test_metrics_count_intake_outcomes(app: Any, client: Any, make_key: Any) -> None:
    token = make_key()
    before = scrape(client)

    body = make_event()
    assert client.post("/api/v1/events", json=body, headers=auth_header(token)).status_code == 202
    assert client.post("/api/v1/events", json=body, headers=auth_header(token)).status_code == 200
    changed = {**body, "setting": "dental"}
    assert client.post("/api/v1/events", json=changed,
                       headers=auth_header(token)).status_code == 409
    assert client.post("/api/v1/events", json=make_event(setting="x"),
                       headers=auth_header(token)).status_code == 422
    assert client.post("/api/v1/events", json=make_event(organisation="A81001"),
                       headers=auth_header(token)).status_code == 403
    batch = {"events": [make_event(), make_event(), make_event(facts={"bmi": 1}), body]}
    assert client.post("/api/v1/events/batch", json=batch,
                       headers=auth_header(token)).status_code == 200

    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("mecc_events_accepted_total", channel="single") == 1
    assert delta("mecc_events_accepted_total", channel="batch") == 2
    assert delta("mecc_events_duplicate_total") == 2
    assert delta("mecc_events_rejected_total", reason="validation") == 2
    assert delta("mecc_events_rejected_total", reason="forbidden") == 1
    assert delta("mecc_events_rejected_total", reason="conflict") == 1
    # The queue depth is read from the database at each scrape: every event is still queued.
    with app.extensions["mecc"].db.session() as session:
        queued = session.scalar(select(func.count()).select_from(Event)
                                .where(Event.status == "queued"))
    assert queued == 3
    assert value(after, "mecc_queue_depth") == queued
    assert delta("mecc_request_seconds_count", method="POST", endpoint="/api/v1/events",
                 status="202") == 1


# ------------------------------------------------------------------------------ OpenAPI
@pytest.fixture
def spec(client: Any) -> dict[str, Any]:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    document: dict[str, Any] = response.get_json()
    return document


def resolve(spec: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        target: Any = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def test_spec_is_openapi_3_and_lists_the_event_operations(spec: dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.")
    assert spec["info"]["title"] and spec["info"]["version"]
    for path, method in EVENT_PATHS.items():
        assert method in spec["paths"][path], path
        assert spec["paths"][path][method]["summary"]


def test_spec_documents_the_contact_event_from_the_catalogue(spec: dict[str, Any]) -> None:
    operation = spec["paths"]["/api/v1/events"]["post"]
    body = resolve(spec, operation["requestBody"]["content"]["application/json"]["schema"])
    assert operation["requestBody"]["required"] is True
    assert set(body["required"]) >= {"event_id", "source", "occurred_at", "organisation",
                                     "setting", "person"}
    assert body["properties"]["occurred_at"]["format"] == "date-time"
    facts = resolve(spec, body["properties"]["facts"])
    catalogue = load_catalogue(ROOT / "config")
    assert set(facts["properties"]) == set(catalogue.sent_facts)
    for name, fact in catalogue.sent_facts.items():
        prop = facts["properties"][name]
        if fact.min is not None:
            assert (prop["minimum"], prop["maximum"]) == (fact.min, fact.max), name
        if fact.values:
            assert set(fact.values) <= set(prop["enum"]), name
    person = resolve(spec, body["properties"]["person"])
    assert "nhs_number" in person["properties"] and person["required"] == ["id"]
    batch = resolve(spec, spec["paths"]["/api/v1/events/batch"]["post"]["requestBody"]
                    ["content"]["application/json"]["schema"])
    assert "events" in batch["properties"]


def test_spec_requires_a_bearer_key_on_every_protected_operation(spec: dict[str, Any]) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert (schemes["bearerAuth"]["type"], schemes["bearerAuth"]["scheme"]) == ("http",
                                                                                "bearer")
    operations = [(f"{method.upper()} {path}", operation)
                  for path, item in spec["paths"].items() if path.startswith("/api/v1/")
                  for method, operation in item.items()
                  if method in ("get", "post", "put", "patch", "delete")]
    # A key always works; some operations also take a stream token (an alternative).
    unsecured = [name for name, operation in operations
                 if {"bearerAuth": []} not in operation.get("security", [])]
    assert not unsecured, unsecured
    undefined = {scheme for _, operation in operations
                 for requirement in operation["security"] for scheme in requirement
                 if scheme not in schemes}
    assert not undefined, undefined
    for path, method in EVENT_PATHS.items():
        assert spec["paths"][path][method]["security"] == [{"bearerAuth": []}]


def test_spec_documents_errors_as_problem_details(spec: dict[str, Any]) -> None:
    expected = {"/api/v1/events": {"400", "401", "403", "409", "413", "415", "422", "503"},
                "/api/v1/events/batch": {"400", "401", "403", "413", "415", "422"},
                "/api/v1/events/{event_uuid}": {"401", "403", "404"}}
    problem = spec["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "errors"} <= problem["properties"].keys()
    for path, method in EVENT_PATHS.items():
        responses = spec["paths"][path][method]["responses"]
        assert expected[path] <= responses.keys(), (path, sorted(responses))
        for status, response in responses.items():
            if status == "default" or int(status) < 400 or status == "414":
                continue  # 414 is gunicorn's own HTML answer, documented as such
            content = resolve(spec, response)["content"]
            assert list(content) == [PROBLEM_JSON], (path, status, content)
            assert resolve(spec, content[PROBLEM_JSON]["schema"]) == problem
    assert "Retry-After" in spec["paths"]["/api/v1/events"]["post"]["responses"]["503"][
        "headers"]


def test_success_responses_stay_plain_json(spec: dict[str, Any]) -> None:
    responses = spec["paths"]["/api/v1/events"]["post"]["responses"]
    for status in ("200", "202"):
        assert list(responses[status]["content"]) == ["application/json"]


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for child in node.values():
            yield from _refs(child)
    elif isinstance(node, list):
        for child in node:
            yield from _refs(child)


def test_every_reference_in_the_spec_resolves_and_errors_are_problem_json(
        spec: dict[str, Any]) -> None:
    dangling = []
    for ref in set(_refs(spec)):
        try:
            resolve(spec, {"$ref": ref})
        except KeyError:
            dangling.append(ref)
    assert not dangling, sorted(dangling)
    default = resolve(spec, spec["paths"]["/api/v1/events"]["post"]["responses"]["default"])
    assert list(default["content"]) == [PROBLEM_JSON]


# ------------------------------------------------------------------------------ human docs
def test_api_docs_is_swagger_ui_served_from_this_app(client: Any) -> None:
    response = client.get("/api/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert 'data-spec-url="/api/v1/openapi.json"' in page
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources and all(s.startswith(("/", "data:")) and not s.startswith("//")
                           for s in sources), (
        "every script, style sheet and link is on this server (no CDN)", sources)
    for asset in ("/api/docs/assets/swagger-ui-bundle.js", "/api/docs/assets/swagger-ui.css"):
        assert asset in sources
        served = client.get(asset)
        assert served.status_code == 200 and len(served.get_data()) > 100_000, asset
        served.close()
    assert client.get("/api/docs/assets/index.html").status_code == 404
    script = client.get("/static/api_docs.js")
    assert "validatorUrl: null" in script.get_data(as_text=True)
    script.close()


def test_every_request_and_success_body_has_an_example(spec: dict[str, Any]) -> None:
    """What the reference shows for each body: an example of the whole body, or examples on
    its fields (Swagger UI builds the sample from them)."""
    def has_example(node: Any, seen: frozenset[str] = frozenset()) -> bool:
        if isinstance(node, dict):
            if "example" in node or "examples" in node:
                return True
            ref = node.get("$ref")
            if isinstance(ref, str):
                return ref not in seen and has_example(resolve(spec, node), seen | {ref})
            return any(has_example(v, seen) for v in node.values())
        if isinstance(node, list):
            return any(has_example(v, seen) for v in node)
        return False

    missing = []
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            if not isinstance(op, dict):
                continue
            body = op.get("requestBody", {}).get("content", {})
            if body and not any(has_example(media) for media in body.values()):
                missing.append(f"{method.upper()} {path} request")
    assert not missing, missing
