"""docker-compose.yml (no Docker engine here, so its shape is checked as data)."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_compose_has_every_service_with_health_checks_and_no_baked_in_secrets() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"api", "worker", "beat", "redis", "postgres"} <= set(services)
    for name in ("api", "worker", "beat", "redis", "postgres"):
        assert "healthcheck" in services[name], name
    for name in ("api", "worker", "beat", "migrate"):
        env = services[name]["environment"]
        assert env["MECC_SECRET_KEY"].startswith("${MECC_SECRET_KEY:?"), name
        assert env["MECC_PSEUDONYM_KEY"].startswith("${MECC_PSEUDONYM_KEY:?"), name
        assert services[name]["depends_on"]["migrate" if name != "migrate" else "postgres"]
    assert "noeviction" in " ".join(services["redis"]["command"])
    assert services["worker"]["command"][:4] == ["celery", "-A", "mecc.worker", "worker"]


def test_ci_calls_make_test_and_the_readme_opens_with_the_two_commands() -> None:
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    block = readme.split("```sh", 1)[1].split("```", 1)[0].split()
    assert block == ["make", "run", "make", "test"]


def test_the_rabbitmq_profile_is_a_three_node_cluster_with_workers_of_its_own() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    nodes = [f"rabbitmq-{i}" for i in (1, 2, 3)]
    conf = (ROOT / "deploy" / "rabbitmq" / "rabbitmq.conf").read_text()
    for i, name in enumerate(nodes, 1):
        node = services[name]
        assert node["profiles"] == ["rabbitmq"] and node["hostname"] == name
        assert node["environment"]["RABBITMQ_ERLANG_COOKIE"].startswith("${")
        assert "healthcheck" in node
        assert any(v.endswith(":/etc/rabbitmq/rabbitmq.conf:ro") for v in node["volumes"])
        assert f"classic_config.nodes.{i} = rabbit@{name}" in conf
    workers = services["worker-rabbitmq"]
    assert workers["profiles"] == ["rabbitmq"]
    assert str(workers["deploy"]["replicas"]).startswith("${MECC_WORKERS")
    assert workers["command"][-2:] == ["--queues", "celery"]
    backtests = services["backtest-worker-rabbitmq"]
    assert backtests["command"][-2:] == ["--queues", "backtests"]
    # Every mecc process reads the broker from one setting: Redis unless it is set.
    for name in ("api", "worker", "beat", "worker-rabbitmq", "backtest-worker-rabbitmq"):
        assert services[name]["environment"]["MECC_BROKER_URL"] == "${MECC_BROKER_URL:-}"
    # Nothing outside the profile depends on RabbitMQ: `docker compose up` runs without it.
    for name, service in services.items():
        if "rabbitmq" not in service.get("profiles", []):
            assert not any(d.startswith("rabbitmq") for d in service.get("depends_on", {})), name
