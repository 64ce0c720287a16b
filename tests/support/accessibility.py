"""axe-core (Deque's accessibility engine, pinned through axe-playwright-python, which ships
axe.min.js) run in a Playwright page: the WCAG problems a page has, as lines a failing
assertion can show."""

from __future__ import annotations

from typing import Any

BLOCKING = ("serious", "critical")


def axe_violations(page: Any, *, impacts: tuple[str, ...] = BLOCKING) -> list[str]:
    """Each axe violation of these impacts: "<rule> (<impact>): <help> at <selectors>".

    The script is injected through the DevTools protocol (page.evaluate), which a page's
    Content-Security-Policy does not block, so the pages keep their strict policy.
    """
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, options={"resultTypes": ["violations"],
                                       "runOnly": {"type": "tag", "values": [
                                           "wcag2a", "wcag2aa", "wcag21a", "wcag21aa",
                                           "best-practice"]}})
    found = []
    for violation in results.response["violations"]:
        if violation.get("impact") not in impacts:
            continue
        where = ", ".join(" ".join(map(str, node.get("target", [])))
                          for node in violation.get("nodes", [])[:5])
        found.append(f"{violation['id']} ({violation['impact']}): {violation['help']} at {where}")
    return found
