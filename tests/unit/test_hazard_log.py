"""The hazard log stays true: every test it names as showing a control exists."""

from __future__ import annotations

import re

from tests.support import ROOT

LOG = ROOT / "docs" / "clinical-safety" / "hazard-log.md"
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)::(test_\w+)`")


def test_every_test_the_hazard_log_names_exists() -> None:
    text = LOG.read_text()
    found = REFERENCE.findall(text)
    assert len(found) >= 30, "the log should name the tests that show its controls"
    missing = [f"{path}::{name}" for path, name in found
               if not (ROOT / path).exists()
               or not re.search(rf"^(async )?def {name}\(", (ROOT / path).read_text(), re.M)]
    assert missing == [], f"named in {LOG.name} but not found: {missing}"


def test_each_hazard_has_causes_effects_controls_and_residual_risk() -> None:
    sections = re.split(r"\n## H\d+ — ", LOG.read_text())[1:]
    assert len(sections) == 8
    for section in sections:
        for part in ("**Causes.**", "**Effects.**", "**Controls in the product.**",
                     "**Residual risk"):
            assert part in section, (section.splitlines()[0], part)
