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
