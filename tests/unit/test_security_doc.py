"""docs/security.md stays true: all ten OWASP API Security (2023) items, each showing tests
that exist."""

from __future__ import annotations

import re

from tests.support import ROOT

DOC = ROOT / "docs" / "security.md"
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)::(test_\w+)`")


def test_every_owasp_item_names_tests_that_exist() -> None:
    sections = re.split(r"\n## (API\d+):2023 ", DOC.read_text())[1:]
    items = sections[0::2]
    assert items == [f"API{n}" for n in range(1, 11)], items
    for item, body in zip(items, sections[1::2], strict=True):
        found = REFERENCE.findall(body)
        assert found, f"{item} names no test"
        missing = [f"{path}::{name}" for path, name in found
                   if not (ROOT / path).exists()
                   or not re.search(rf"^(async )?def {name}\(", (ROOT / path).read_text(),
                                    re.M)]
        assert missing == [], f"{item} names tests that do not exist: {missing}"


def test_the_audit_entity_list_names_every_entity_the_code_records() -> None:
    from mecc.admin.audit import ENTITIES

    recorded = {m for path in (ROOT / "mecc").rglob("*.py")
                for m in re.findall(r'\bentity="([a-z_]+)"', path.read_text())}
    assert recorded and recorded <= set(ENTITIES), recorded - set(ENTITIES)
