"""Reports benchmark: the report endpoints over 1,000,000 prompts on PostgreSQL.

A fresh PostgreSQL database (`mecc_bench_reports`, dropped and re-made) gets 1,000,000 prompts
from 500,000 contacts spread over the last 100 days (filled by INSERT ... SELECT over
generate_series: topics, 24 rules, a realistic mix of outcomes, 2,000 members of staff in 100
teams, and the person at the contact: ethnic group, age band, sex, 400 postcode districts).
Then, through the app (Flask test client, a real API key, JSON answers), each timed 7 times:

- the 90-day topic report (GET /api/v1/reports/outcomes?group_by=topic),
- the 90-day equity reports (group_by=ethnicity_group, and postcode_district: 400 groups, the
  heaviest small-number suppression),
- the 90-day rule-fatigue report, and the staff-load report,

beside the floor: a plain `SELECT count(*)` over the same 90 days of prompts, the least any
report over those rows can cost. Goal: each report p50 < 1 s.

    .venv/bin/python -m bench.reports            # about 3 minutes, most of it the fill
    .venv/bin/python -m bench.reports --prompts 100000 --quick
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from bench.common import command_line, machine, machine_markdown, write_section
from tests.support.factories import add_key, auth_header
from tests.support.stack import BENCH_REDIS_URL, new_database

DATABASE = "mecc_bench_reports"
DAYS = 100
WINDOW_DAYS = 90

_FILL_EVENTS = """
INSERT INTO events (id, source, event_id, body_hash, organisation, setting, staff_id, team,
                    person_id, occurred_at, received_at, payload, status, attempts,
                    next_attempt_at, evaluated_at)
SELECT md5('e' || n)::uuid::text, 'bench', 'ev-' || n, 'x', 'ORG' || (n % 5), 'general_practice',
       'st-' || (n % 2000), 'team-' || (n % 100), 'p-' || (n % 300000),
       now() - (random() * interval '{days} days'), now(), '{{}}', 'evaluated', 1, now(), now()
FROM generate_series(1, :events) AS n
"""
# Two prompts per contact; their attributes are the contact's (hashed from the event number so
# that both prompts of a contact agree).
_FILL_PROMPTS = """
INSERT INTO prompts (id, event_id, source, person_id, organisation, setting, team, staff_id,
                     rule_key, rule_version, topic, kind, priority, indicator, summary, detail,
                     suggestions, sources, status, contact_at, created_at, updated_at,
                     age_band, sex, ethnicity_group, postcode_district)
SELECT md5('p' || n || '-' || k)::uuid::text, e.id, 'bench', e.person_id, e.organisation,
       e.setting, e.team, e.staff_id, 'rule-' || ((n * 7 + k * 13) % 24), 1,
       (ARRAY['smoking','alcohol','healthy_weight','physical_activity','mental_wellbeing',
              'diabetes_prevention'])[1 + (n + k) % 6],
       'lifestyle_conversation', 50, 'info', :summary, :detail, CAST(:suggestions AS jsonb),
       CAST(:sources AS jsonb),
       (ARRAY['new','new','deferred','conversation_had','conversation_had','conversation_had',
              'referred','declined','declined','not_now','not_appropriate'])[1 + floor(
              random() * 11)::int],
       e.occurred_at, e.occurred_at, e.occurred_at,
       (ARRAY['0-15','16-24','25-34','35-44','45-54','55-64','65-74','75+',NULL])[
              1 + (n * 31) % 9],
       (ARRAY['female','male','female','male','other','unknown',NULL])[1 + (n * 17) % 7],
       (ARRAY['white','south_asian','black_african','black_caribbean','chinese','mixed',
              'other_asian','middle_eastern','other','gypsy_irish_traveller',NULL])[
              1 + (n * 13) % 11],
       CASE WHEN n % 50 = 0 THEN NULL ELSE 'D' || (n::bigint * 7919 % 400) END
FROM generate_series(1, :events) AS n
JOIN events e ON e.id = md5('e' || n)::uuid::text
CROSS JOIN generate_series(0, 1) AS k
"""


# A prompt row as wide as a real one (summary, markdown detail, resolved services, sources),
# so that scanning the table costs what it would in production.
_PROMPT_TEXT = {
    "summary": "Current smoker: offer very brief advice and a referral to stop smoking support",
    "detail": ("**Ask** about smoking, **advise** that stopping with support is the most "
               "effective way to quit, and **act**: offer a referral to the local stop smoking "
               "service, which gives behavioural support and medicines. Record the outcome. "
               "If the person does not want a referral now, say the offer stays open. ") * 2,
    "suggestions": json.dumps([{
        "label": "Refer to Manchester Stop Smoking Service", "service_id": "example-mcr-stop",
        "service_type": "stop_smoking", "name": "Manchester Stop Smoking Service",
        "contact": {"phone": "0161 000 0000", "url": "https://example.org/stop-smoking"},
        "referral_url": "https://example.org/stop-smoking/refer", "self_referral": True}]),
    "sources": json.dumps([{"label": "NICE NG209",
                            "url": "https://www.nice.org.uk/guidance/ng209"}]),
}


def fill(engine: Any, prompts: int) -> float:
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(text(_FILL_EVENTS.format(days=DAYS)), {"events": prompts // 2})
        conn.execute(text(_FILL_PROMPTS), {"events": prompts // 2, **_PROMPT_TEXT})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE events"))
        conn.execute(text("VACUUM ANALYZE prompts"))
    return time.perf_counter() - started


def timed_round_robin(calls: list[Callable[[], Any]], repeats: int) -> list[list[float]]:
    """Milliseconds per call, `repeats` rounds taking each call in turn (so that whatever
    else the machine does falls on every query alike), after one warm-up round: plans cached,
    pages in memory, as for a dashboard used through the day."""
    for call in calls:
        call()
    out: list[list[float]] = [[] for _ in calls]
    for _ in range(repeats):
        for n, call in enumerate(calls):
            started = time.perf_counter()
            call()
            out[n].append((time.perf_counter() - started) * 1000)
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(prompts: int, repeats: int) -> str:
    from mecc.api import create_app

    work = Path(tempfile.mkdtemp(prefix="mecc-bench-reports-"))
    database = new_database("postgresql", work, name=DATABASE)
    try:
        app = create_app({"database_url": database.url, "redis_url": BENCH_REDIS_URL,
                          "var_dir": str(work), "secret_key": "bench", "pseudonym_key": "bench",
                          "rate_limit": "off"})
        db = app.extensions["mecc"].db
        # The app's connections stop a statement after 15 s; filling a million rows takes longer.
        filler = create_engine(database.url)
        seconds = fill(filler, prompts)
        filler.dispose()
        key = add_key(db, organisation="*", scopes=("reports:read",)).key
        client = app.test_client()
        end = datetime.now(UTC)
        start = end - timedelta(days=WINDOW_DAYS)
        window = (f"from={start.isoformat().replace('+00:00', 'Z')}"
                  f"&to={end.isoformat().replace('+00:00', 'Z')}")
        with db.engine.connect() as conn:
            in_window = conn.execute(text(
                "SELECT count(*) FROM prompts WHERE contact_at >= :s AND contact_at < :e"),
                {"s": start, "e": end}).scalar_one()

        def floor() -> None:
            with db.engine.connect() as conn:
                conn.execute(text("SELECT count(*) FROM prompts WHERE contact_at >= :s "
                                  "AND contact_at < :e"), {"s": start, "e": end}).scalar_one()

        def endpoint(path: str) -> Callable[[], None]:
            joiner = "&" if "?" in path else "?"

            def call() -> None:
                response = client.get(f"/api/v1/reports/{path}{joiner}{window}",
                                      headers=auth_header(key))
                assert response.status_code == 200, response.get_data(as_text=True)[:300]
            return call

        cases = [
            ("floor: SELECT count(*) over the window", floor, False),
            ("topic report (group_by=topic)", endpoint("outcomes?group_by=topic"), True),
            ("equity report (group_by=ethnicity_group)",
             endpoint("outcomes?group_by=ethnicity_group"), True),
            ("equity report (group_by=postcode_district, 400 groups)",
             endpoint("outcomes?group_by=postcode_district"), True),
            ("rule-fatigue report", endpoint("rule-fatigue"), True),
            ("staff-load report", endpoint("staff-load"), False),
        ]
        load_before = os.getloadavg()[0]
        times = timed_round_robin([call for _, call, _ in cases], repeats)
        results = [(name, t, goal) for (name, _, goal), t in zip(cases, times, strict=True)]
        load_after = os.getloadavg()[0]
        plan = _plan(db.engine, start, end)
    finally:
        database.drop()
    floor_p50 = statistics.median(results[0][1])
    lines = [
        "## Reports over 1,000,000 prompts",
        "",
        machine_markdown(machine()).rstrip(),
        f"- Command: `{command_line()}`",
        f"- Data: {prompts:,} prompts from {prompts // 2:,} contacts over {DAYS} days on "
        f"PostgreSQL (filled with INSERT ... SELECT in {seconds:.0f} s, then VACUUM ANALYZE); "
        f"the {WINDOW_DAYS}-day window holds {in_window:,} of them.",
        f"- Each report through the app (Flask test client, API key, JSON), {repeats} timed "
        "rounds taking the queries in turn, after one warm-up round; ratios are to the floor's "
        "p50. Goal: p50 < 1 s for the topic, equity and rule-fatigue reports.",
        f"- Load average (1 min) on the machine's 2 cores: {load_before:.1f} at the start of "
        f"the timing, {load_after:.1f} at the end (other work shared the machine).",
        "",
        "| Query | p50 ms | p90 ms | Ratio to floor | Goal met |",
        "|---|---:|---:|---:|---|",
    ]
    for name, values, goal in results:
        p50 = statistics.median(values)
        met = ("yes" if p50 < 1000 else "NO") if goal else ""
        lines.append(f"| {name} | {p50:.0f} | {percentile(values, 0.9):.0f} | "
                     f"{p50 / floor_p50:.2f}× | {met} |")
    lines += ["", "Plan of the topic report's query (EXPLAIN): the covering index "
              "`ix_prompts_contact_report` is read alone (no heap fetches once vacuumed).", "",
              "```", plan, "```"]
    return "\n".join(lines) + "\n"


def _plan(engine: Any, start: datetime, end: datetime) -> str:
    query = ("EXPLAIN SELECT topic, status, count(*) FROM prompts "
             "WHERE contact_at >= :s AND contact_at < :e GROUP BY topic, status")
    with engine.connect() as conn:
        rows = [r[0] for r in conn.execute(text(query), {"s": start, "e": end})]
    return "\n".join(rows[:10])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="3 timed runs instead of 7")
    args = parser.parse_args()
    section = run(args.prompts, 3 if args.quick else 7)
    print(section)
    write_section("reports", section)


if __name__ == "__main__":
    main()
