"""Alert fatigue: which rules are mostly overridden by the staff they prompt?

Per rule, over prompts whose contact falls in the window: ``pushed`` (shown, not deferred),
``with_outcome`` and ``no_outcome``, the overriding outcomes (``declined``,
``not_appropriate``, ``not_now``) and ``override_rate`` = (declined + not_appropriate +
not_now) / with_outcome. A rule is ``flagged`` when its override rate reaches
MECC_FATIGUE_OVERRIDE_RATE (default 0.7) and it has at least MECC_FATIGUE_MIN_PROMPTS pushed
prompts (default 20), so that a handful of early declines does not brand a rule.

The same flags reach Prometheus (`mecc_rule_fatigue_flagged`, `mecc_rule_override_rate`,
refreshed at most every few minutes when /metrics is scraped) and the rule editor's list.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import Gauge
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from mecc.admin.keys import Principal
from mecc.platform.runtime import Runtime
from mecc.platform.settings import Settings
from mecc.prompts.service import scope_organisation
from mecc.reports.window import Window, rate, resolve_window
from mecc.store.models import Prompt, Rule, RuleVersion

log = logging.getLogger(__name__)

OVERRIDES = ("declined", "not_appropriate", "not_now")
GAUGE_DAYS = 30
GAUGE_REFRESH_SECONDS = 300.0
RULE_FATIGUE_FLAGGED = Gauge(
    "mecc_rule_fatigue_flagged", "1 when a rule is flagged for alert fatigue (last 30 days)",
    ["rule"], multiprocess_mode="livemax")
RULE_OVERRIDE_RATE = Gauge(
    "mecc_rule_override_rate", "Overridden share of a rule's prompts with an outcome (last 30 "
    "days)", ["rule"], multiprocess_mode="livemax")
_refreshed = {"at": float("-inf")}
_refresh_lock = threading.Lock()


def fatigue_rows(session: Session, window: Window, organisation: str | None,
                 settings: Settings) -> list[dict[str, Any]]:
    """One row per rule with prompts in the window: counts, override rate, flag."""
    # Counted per (rule, status) and pivoted here: cheaper than a SUM(CASE ...) per status.
    query = (select(Prompt.rule_key, Prompt.status, func.max(Prompt.topic), func.count())
             .where(Prompt.contact_at >= window.start, Prompt.contact_at < window.end)
             .group_by(Prompt.rule_key, Prompt.status))
    if organisation is not None:
        query = query.where(Prompt.organisation == organisation)
    per_rule: dict[str, dict[str, Any]] = {}
    for rule, status, topic, n in session.execute(query):
        counts = per_rule.setdefault(rule, {"topic": topic, "pushed": 0, "no_outcome": 0,
                                            **dict.fromkeys(OVERRIDES, 0)})
        counts["topic"] = max(counts["topic"], topic)
        if status != "deferred":
            counts["pushed"] += int(n)
        if status == "new":
            counts["no_outcome"] += int(n)
        elif status in OVERRIDES:
            counts[status] += int(n)
    rows = []
    for rule, c in per_rule.items():
        with_outcome = c["pushed"] - c["no_outcome"]
        override_rate = rate(sum(c[o] for o in OVERRIDES), with_outcome)
        rows.append({
            "rule": rule, "topic": c["topic"], "pushed": c["pushed"],
            "with_outcome": with_outcome, **{o: c[o] for o in OVERRIDES},
            "no_outcome": c["no_outcome"], "override_rate": override_rate,
            "flagged": (override_rate is not None
                        and override_rate >= settings.fatigue_override_rate
                        and c["pushed"] >= settings.fatigue_min_prompts),
        })
    rows.sort(key=lambda r: (not r["flagged"], -(r["override_rate"] or 0), -r["pushed"],
                             r["rule"]))
    return rows


def _titles(session: Session, keys: list[str]) -> dict[str, str]:
    """Each rule's title as its live (else latest) version says."""
    if not keys:
        return {}
    current = {k: (a or latest) for k, a, latest in session.execute(
        select(Rule.key, Rule.active_version, Rule.latest_version).where(Rule.key.in_(keys)))}
    out = {}
    for key, version, body in session.execute(
            select(RuleVersion.key, RuleVersion.version, RuleVersion.body)
            .where(RuleVersion.key.in_(keys))):
        if current.get(key) == version and isinstance(body, dict):
            out[key] = str(body.get("title") or key)
    return out


def fatigue_report(runtime: Runtime, principal: Principal, *, start: datetime | None,
                   end: datetime | None, organisation: str | None) -> dict[str, Any]:
    visible = scope_organisation(principal, organisation)
    visible = visible.upper() if visible else None
    window = resolve_window(start, end)
    settings = runtime.settings
    with runtime.db.session() as session:
        rows = fatigue_rows(session, window, visible, settings)
        titles = _titles(session, [r["rule"] for r in rows])
    for row in rows:
        row["title"] = titles.get(row["rule"], row["rule"])
    return {
        **window.as_dict(), "organisation": visible,
        "thresholds": {"override_rate": settings.fatigue_override_rate,
                       "min_prompts": settings.fatigue_min_prompts},
        "flagged": sum(1 for r in rows if r["flagged"]),
        "items": rows, "next_cursor": None,
    }


def refresh_gauges(runtime: Runtime, *, now: float | None = None, force: bool = False) -> None:
    """Set the Prometheus gauges from the last 30 days, at most every few minutes per
    process (a scrape must stay cheap). A database outage leaves the last values."""
    moment = time.monotonic() if now is None else now
    with _refresh_lock:
        if not force and moment - _refreshed["at"] < GAUGE_REFRESH_SECONDS:
            return
        _refreshed["at"] = moment
    end = datetime.now(UTC)
    try:
        with runtime.db.session() as session:
            rows = fatigue_rows(session, Window(end - timedelta(days=GAUGE_DAYS), end), None,
                                runtime.settings)
    except SQLAlchemyError as exc:
        log.warning("rule fatigue gauges not refreshed", extra={"error": type(exc).__name__})
        return
    RULE_FATIGUE_FLAGGED.clear()
    RULE_OVERRIDE_RATE.clear()
    for row in rows:
        RULE_FATIGUE_FLAGGED.labels(row["rule"]).set(1 if row["flagged"] else 0)
        if row["override_rate"] is not None:
            RULE_OVERRIDE_RATE.labels(row["rule"]).set(row["override_rate"])
