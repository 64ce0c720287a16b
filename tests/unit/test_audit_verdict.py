"""`make audit` (scripts/audit_dependencies.py): a known vulnerability always fails; only an
unreachable vulnerability service is let through, and said plainly."""

from __future__ import annotations

import importlib.util
from typing import Any

from tests.support import ROOT

_spec = importlib.util.spec_from_file_location("audit_dependencies",
                                               ROOT / "scripts" / "audit_dependencies.py")
assert _spec is not None and _spec.loader is not None
audit = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(audit)

NOT_FOUND = "Dependency not found on PyPI and could not be audited: flask (3.1.3)"


def dep(name: str, *, vulns: list[dict[str, Any]] | None = None,
        skip: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"name": name, "version": "1.0"}
    if skip:
        item["skip_reason"] = skip
    else:
        item["vulns"] = vulns or []
    return item


def test_a_known_vulnerability_fails_even_when_other_packages_were_skipped() -> None:
    report = {"dependencies": [
        dep("jinja2", vulns=[{"id": "GHSA-h5c8-rqwp-cp95", "fix_versions": ["3.1.3"],
                              "description": "sandbox escape"}]),
        dep("flask", skip=NOT_FOUND)]}
    code, lines = audit.verdict(report, "")
    assert code == 1
    assert any("GHSA-h5c8-rqwp-cp95" in line and "3.1.3" in line for line in lines)


def test_an_unreachable_service_is_said_plainly_and_passes_unless_required() -> None:
    report = {"dependencies": [dep("flask", skip=NOT_FOUND), dep("alembic", skip=NOT_FOUND)]}
    code, lines = audit.verdict(report, "")
    assert code == 0 and "NOT CHECKED" in lines[0] and "2 locked packages" in lines[0]
    assert audit.verdict(report, "", require_service=True)[0] == 1
    unreachable = "requests.exceptions.ConnectionError: Max retries exceeded with url"
    assert audit.verdict(None, unreachable)[0] == 0
    assert audit.verdict(None, "Traceback ... KeyError: 'x'")[0] == 1


def test_some_packages_unaudited_while_others_were_is_a_failure() -> None:
    report = {"dependencies": [dep("flask"), dep("alembic", skip=NOT_FOUND)]}
    assert audit.verdict(report, "")[0] == 1
    assert audit.verdict({"dependencies": [dep("flask")]}, "")[0] == 0
